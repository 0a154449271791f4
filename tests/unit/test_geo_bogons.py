"""Non-routable addresses (v4 and v6) are recognised locally; public ones are not."""

from __future__ import annotations

import pytest

from webtraffic.geo.bogons import InvalidIPError, canonical_ip, classify, is_routable


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("169.254.10.20", "link-local"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.1.2.3", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("0.12.1.1", "this-network"),
        ("100.64.0.1", "shared-address-space"),
        ("192.0.2.55", "documentation"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.200", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.0.8", "ietf-protocol-assignments"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1c2d:3e4f", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd12:3456:789a::1", "unique-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::8:800:200c:417a", "documentation"),
        ("3fff:1::1", "documentation"),
        ("fec0::1", "site-local"),
        ("64:ff9b::808:808", "nat64"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "ietf-protocol-assignments"),  # Teredo
        ("100::1", "discard-only"),
        ("::ffff:10.1.2.3", "private"),  # IPv4-mapped: judged as the IPv4 address
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:c0a8:0101::1", "6to4-private"),  # 6to4 of 192.168.1.1
        ("4000::1", "reserved"),  # outside 2000::/3
    ],
)
def test_non_routable_addresses_are_named(ip, kind):
    assert classify(ip) == kind
    assert not is_routable(ip)


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "1.1.1.1",
        "81.2.69.142",
        "172.32.0.1",  # just outside 172.16.0.0/12
        "100.128.0.1",  # just outside the shared address space
        "11.0.0.1",
        "2001:4860:4860::8888",
        "2a00:1450:4001:82a::200e",
        "::ffff:8.8.4.4",
        "2002:0808:0808::1",  # 6to4 of a public address
    ],
)
def test_public_addresses_are_routable(ip):
    assert classify(ip) is None
    assert is_routable(ip)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (" 8.8.8.8 ", "8.8.8.8"),
        ("2001:4860:4860:0000:0000:0000:0000:8888", "2001:4860:4860::8888"),
        ("2A00:1450::200E", "2a00:1450::200e"),
        ("::FFFF:1.1.1.1", "1.1.1.1"),
    ],
)
def test_canonical_spelling(text, canonical):
    assert canonical_ip(text) == canonical


@pytest.mark.parametrize(
    "text", ["", "nope", "1.2.3", "1.2.3.256", "01.2.3.4", "fe80::1%eth0", "1.2.3.4/24", "::g"]
)
def test_invalid_addresses_raise_one_line(text):
    with pytest.raises(InvalidIPError, match="not an IP address") as excinfo:
        classify(text)
    assert "\n" not in str(excinfo.value)
