"""Addresses that must never be sent to a resolver: private, loopback, reserved and the like.

Classification uses the IANA special-purpose registries as encoded in :mod:`ipaddress`, plus the
ranges it folds into broader flags (CGNAT shared space, benchmarking, 6to4/Teredo relays of
bogons). IPv4-mapped IPv6 (``::ffff:a.b.c.d``) is classified as the IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from webtraffic.errors import WebtrafficError

IPAddress = IPv4Address | IPv6Address


class InvalidIPError(WebtrafficError):
    """The text is not an IPv4 or IPv6 address."""


# Checked in this order; the first match names the class. Specific ranges first, so that, e.g.,
# 192.0.2.0/24 says "documentation" rather than the generic "reserved".
_V4_RANGES: tuple[tuple[str, IPv4Network], ...] = tuple(
    (name, IPv4Network(net))
    for name, net in (
        ("unspecified", "0.0.0.0/32"),
        ("this-network", "0.0.0.0/8"),
        ("private", "10.0.0.0/8"),
        ("shared-address-space", "100.64.0.0/10"),
        ("loopback", "127.0.0.0/8"),
        ("link-local", "169.254.0.0/16"),
        ("private", "172.16.0.0/12"),
        ("ietf-protocol-assignments", "192.0.0.0/24"),
        ("documentation", "192.0.2.0/24"),
        ("6to4-relay-anycast", "192.88.99.0/24"),
        ("private", "192.168.0.0/16"),
        ("benchmarking", "198.18.0.0/15"),
        ("documentation", "198.51.100.0/24"),
        ("documentation", "203.0.113.0/24"),
        ("multicast", "224.0.0.0/4"),
        ("broadcast", "255.255.255.255/32"),
        ("reserved", "240.0.0.0/4"),
    )
)

_V6_RANGES: tuple[tuple[str, IPv6Network], ...] = tuple(
    (name, IPv6Network(net))
    for name, net in (
        ("unspecified", "::/128"),
        ("loopback", "::1/128"),
        ("nat64", "64:ff9b::/96"),
        ("nat64-local", "64:ff9b:1::/48"),
        ("discard-only", "100::/64"),
        ("ietf-protocol-assignments", "2001::/23"),
        ("documentation", "2001:db8::/32"),
        ("documentation", "3fff::/20"),
        ("orchid", "2001:10::/28"),
        ("orchid", "2001:20::/28"),
        ("unique-local", "fc00::/7"),
        ("link-local", "fe80::/10"),
        ("site-local", "fec0::/10"),
        ("multicast", "ff00::/8"),
        ("reserved", "::/8"),
    )
)
# 6to4 (2002::/16) embeds an IPv4 address: a bogon inside makes the whole address one. Teredo
# (2001::/32) lies in 2001::/23 above, so it is never geolocated.
_6TO4 = IPv6Network("2002::/16")
_GLOBAL_UNICAST_V6 = IPv6Network("2000::/3")


def parse_ip(text: str) -> IPAddress:
    """Parses an address, mapping IPv4-mapped IPv6 (``::ffff:1.2.3.4``) to its IPv4 address.

    Args:
        text: An IPv4 or IPv6 address; surrounding blanks are ignored, a zone id is not allowed.

    Returns:
        The address.

    Raises:
        InvalidIPError: ``text`` is not an address.
    """
    if not isinstance(text, str):
        raise InvalidIPError(f"not an IP address: {text!r}")
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidIPError(f"not an IP address: {text!r}") from None
    if isinstance(address, IPv6Address):
        if address.scope_id is not None:
            raise InvalidIPError(f"not an IP address: {text!r} (zone ids are not accepted)")
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def canonical_ip(text: str) -> str:
    """Returns the canonical spelling of an address (the key of ``ref.geo_cache``).

    Raises:
        InvalidIPError: ``text`` is not an address.
    """
    return str(parse_ip(text))


def _classify_v4(address: IPv4Address) -> str | None:
    for name, network in _V4_RANGES:
        if address in network:
            return name
    return None


def classify(address: IPAddress | str) -> str | None:
    """Names the special-purpose class of an address, or None for a public (routable) one.

    Args:
        address: An address or its text.

    Returns:
        ``private``, ``loopback``, ``link-local``, ``multicast``, ``documentation``, ``reserved``,
        ``unique-local``, ``shared-address-space``, ... or None when it may be geolocated.

    Raises:
        InvalidIPError: ``address`` is text that is not an address.
    """
    if isinstance(address, str):
        address = parse_ip(address)
    if isinstance(address, IPv4Address):
        return _classify_v4(address)
    if address.ipv4_mapped is not None:  # only when built by hand; parse_ip unwraps it
        return _classify_v4(address.ipv4_mapped)
    for name, network in _V6_RANGES:
        if address in network:
            return name
    if address in _6TO4 and address.sixtofour is not None:
        inner = _classify_v4(address.sixtofour)
        return f"6to4-{inner}" if inner else None
    if address not in _GLOBAL_UNICAST_V6:
        return "reserved"  # everything outside 2000::/3 is unassigned or special
    return None


def is_routable(address: IPAddress | str) -> bool:
    """Tells whether an address is public, i.e. worth asking a resolver about."""
    return classify(address) is None
