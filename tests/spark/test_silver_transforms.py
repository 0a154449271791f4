"""Silver's pure transforms on tiny hand-written batch DataFrames.

Each rule of the contract gets a record that breaks only that rule; the Spark verdict is
compared with the expectation written here and with the simulator's reference classifier.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from datetime import UTC, datetime

import pytest
from pyspark.sql import functions as F

from webtraffic.bronze import bronze_from_kafka
from webtraffic.contract import visitor_key
from webtraffic.silver import (
    IPV4_PATTERN,
    IPV6_PATTERN,
    deduplicate,
    normalise,
    quarantine,
    validate,
)
from webtraffic.simulator import oracle

KAFKA_TS = datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC)
UA = {
    "family": "Chrome", "major": "120", "minor": "0", "patch": "1",
    "device": {"family": "Other", "major": None, "minor": None, "patch": None},
    "os": {"family": "Windows", "major": "11", "minor": None, "patch": None},
}  # fmt: skip
BASE = {
    "url": "https://www.learnhub.example/courses/spark-1?utm_source=google&utm_medium=cpc&x=1",
    "referrer": "https://www.Google.com/search?q=spark",
    "user_id": None,
    "academy_id": 101,
    "user_agent": UA,
    "headers": {"User-Agent": "Mozilla/5.0", "Accept-Language": "de-DE,de;q=0.9"},
    "host": "www.learnhub.example",
    "ip": "81.2.69.142",
    "event_time": "2026-12-01T13:00:00.250+01:00",
}


def payload(**changes) -> bytes:
    body = {**BASE, **changes}
    for key, value in list(changes.items()):
        if value is ...:
            del body[key]
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


CASES: list[tuple[str, bytes, str | None]] = [
    ("valid", payload(), None),
    ("valid with unknown extra field", payload(screen={"w": 390}), None),
    ("valid IPv6", payload(ip="2001:4860:4860::8888"), None),
    ("valid private IP", payload(ip="10.1.2.3"), None),
    ("valid without offset (UTC)", payload(event_time="2026-12-01T12:00:00"), None),
    (
        "invalid UTF-8",
        payload(url="https://a.example/caf\u00e9").replace(b"\xc3\xa9", b"\xe9"),
        "invalid_utf8",
    ),
    ("oversized", payload(headers={"x": "y" * 40_000}), "oversized"),
    ("not JSON", b'{"url": "https://a.example/', "not_json"),
    ("form post", b"url=https://a.example/&host=a.example", "not_json"),
    ("JSON array", b"[" + payload() + b"]", "not_object"),
    ("JSON null", b"null", "not_object"),
    ("user_id as string", payload(user_id="u-7"), "wrong_type"),
    ("academy_id as float", payload(academy_id=1.5), "wrong_type"),
    ("user_agent as string", payload(user_agent="Mozilla/5.0"), "wrong_type"),
    ("ua major as number", payload(user_agent={**UA, "major": 120}), "wrong_type"),
    ("os as string", payload(user_agent={**UA, "os": "Windows"}), "wrong_type"),
    ("header value as number", payload(headers={"dnt": 1}), "wrong_type"),
    ("headers as list", payload(headers=[["a", "b"]]), "wrong_type"),
    ("ip as number", payload(ip=1357), "wrong_type"),
    ("missing event_time", payload(event_time=...), "missing_event_time"),
    ("null event_time", payload(event_time=None), "missing_event_time"),
    ("unparseable event_time", payload(event_time="yesterday"), "bad_event_time"),
    ("impossible date", payload(event_time="2026-02-30T10:00:00Z"), "bad_event_time"),
    ("space instead of T", payload(event_time="2026-12-01 12:00:00Z"), "bad_event_time"),
    ("far-future event_time", payload(event_time="2031-01-01T00:00:00Z"), "future_event_time"),
    ("61 minutes ahead", payload(event_time="2026-12-01T13:01:31Z"), "future_event_time"),
    ("59 minutes ahead is fine", payload(event_time="2026-12-01T12:59:29Z"), None),
    ("missing url", payload(url=...), "missing_url"),
    ("empty url", payload(url=""), "missing_url"),
    ("missing host", payload(host=...), "missing_host"),
    ("bad IPv4", payload(ip="999.1.2.3"), "invalid_ip"),
    ("IPv4 with leading zero", payload(ip="01.2.3.4"), "invalid_ip"),
    ("bad IPv6", payload(ip="2001:db8::zz"), "invalid_ip"),
    ("empty ip", payload(ip=""), "invalid_ip"),
    ("missing ip", payload(ip=...), "invalid_ip"),
    ("two defects: the first in precedence wins", payload(url="", ip="x"), "missing_url"),
]


@pytest.fixture(scope="module")
def validated(spark):
    rows = [
        (b"k", value, "web.events", 0, offset, KAFKA_TS.replace(tzinfo=None))
        for offset, (_, value, _) in enumerate(CASES)
    ]
    kafka = spark.createDataFrame(
        rows,
        "key BINARY, value BINARY, topic STRING, partition INT, offset BIGINT, timestamp TIMESTAMP",
    )
    return validate(bronze_from_kafka(kafka)).cache()


@pytest.mark.parametrize(("name", "value", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_rule(validated, name, value, expected):
    offset = next(i for i, case in enumerate(CASES) if case[0] == name)
    row = validated.where(F.col("kafka_offset") == offset).select("reason", "reasons").first()
    assert row.reason == expected
    # The reference classifier of the simulator agrees.
    assert oracle.classify(value, int(KAFKA_TS.timestamp() * 1000)) == expected
    if expected is None:
        assert row.reasons == []
    else:
        assert row.reasons[0] == expected


def test_invalid_utf8_keeps_the_raw_bytes(validated):
    offset = next(i for i, c in enumerate(CASES) if c[0] == "invalid UTF-8")
    row = validated.where(F.col("kafka_offset") == offset).first()
    assert row.value is None
    assert bytes(row.value_raw) == CASES[offset][1]
    assert row.is_valid_utf8 is False


def test_quarantine_holds_every_rejected_record(validated):
    rows = quarantine(validated).collect()
    expected = {i: c[2] for i, c in enumerate(CASES) if c[2] is not None}
    assert {r.kafka_offset: r.reason for r in rows} == expected


def test_normalise_flattens_and_identifies(validated):
    rows = {r.kafka_offset: r for r in normalise(validated).collect()}
    assert set(rows) == {i for i, c in enumerate(CASES) if c[2] is None}
    first = rows[0]
    assert first.event_time == datetime(2026, 12, 1, 12, 0, 0, 250000)
    assert first.event_id == hashlib.sha256(CASES[0][1]).hexdigest()
    assert first.event_type == "page_view"
    assert first.visitor_key == visitor_key(None, None, BASE["ip"], UA)
    assert first.is_logged_in is False
    assert (first.url_scheme, first.url_host, first.url_path) == (
        "https", "www.learnhub.example", "/courses/spark-1",
    )  # fmt: skip
    assert (first.utm_source, first.utm_medium, first.utm_campaign) == ("google", "cpc", None)
    assert first.url_query == "utm_source=google&utm_medium=cpc&x=1"
    assert first.referrer_host == "www.google.com"
    assert first.accept_language == "de-DE,de;q=0.9"
    assert first.headers["user-agent"] == "Mozilla/5.0"
    assert (first.ua_family, first.ua_major, first.os_family, first.os_major) == (
        "Chrome", "120", "Windows", "11",
    )  # fmt: skip
    assert first.device_family == "Other"


def test_event_id_and_visitor_key_variants(spark):
    values = [
        payload(event_id="abc-1", user_id=42, anonymous_id="cookie-1"),
        payload(event_id="", anonymous_id="cookie-1", event_type="click"),
        payload(anonymous_id=""),
    ]
    kafka = spark.createDataFrame(
        [(None, v, "t", 0, i, KAFKA_TS.replace(tzinfo=None)) for i, v in enumerate(values)],
        "key BINARY, value BINARY, topic STRING, partition INT, offset BIGINT, timestamp TIMESTAMP",
    )
    rows = sorted(
        normalise(validate(bronze_from_kafka(kafka))).collect(), key=lambda r: r.kafka_offset
    )
    assert [r.event_id for r in rows] == [
        "abc-1",
        hashlib.sha256(values[1]).hexdigest(),
        hashlib.sha256(values[2]).hexdigest(),
    ]
    assert [r.visitor_key for r in rows] == [
        "u:42", "a:cookie-1", visitor_key(None, "", BASE["ip"], UA),
    ]  # fmt: skip
    assert [r.event_type for r in rows] == ["page_view", "click", "page_view"]
    assert rows[0].is_logged_in is True


def test_batch_deduplicate_keeps_one_row_per_event_id_and_every_rejected_record(spark):
    value = payload(event_id="same")
    values = [value, value, b"not json", b"not json"]
    kafka = spark.createDataFrame(
        [(None, v, "t", 0, i, KAFKA_TS.replace(tzinfo=None)) for i, v in enumerate(values)],
        "key BINARY, value BINARY, topic STRING, partition INT, offset BIGINT, timestamp TIMESTAMP",
    )
    deduplicated = deduplicate(validate(bronze_from_kafka(kafka)))
    assert normalise(deduplicated).count() == 1
    assert sorted(r.kafka_offset for r in quarantine(deduplicated).collect()) == [2, 3]


ADDRESSES = [
    "0.0.0.0", "255.255.255.255", "192.168.1.1", "1.2.3.4", "256.1.1.1", "1.2.3", "1.2.3.4.5",
    "01.2.3.4", "1.2.3.04", " 1.2.3.4", "::", "::1", "2001:db8::1",
    "2001:0db8:0000:0000:0000:0000:0000:0001", "fe80::1:2:3:4", "2001:db8::1::2", "2001:db8:::1",
    "12345::", "::ffff:1.2.3.4", "64:ff9b::1.2.3.4",
    "2001:db8:1:2:3:4:5:6:7", "g::1", "1::", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "",
]  # fmt: skip


def test_ip_patterns_agree_with_python(spark):
    rows = spark.createDataFrame([(a,) for a in ADDRESSES], "ip STRING").select(
        "ip",
        (F.col("ip").rlike(IPV4_PATTERN) | F.col("ip").rlike(IPV6_PATTERN)).alias("ok"),
    )
    for row in rows.collect():
        try:
            ipaddress.ip_address(row.ip)
            expected = True
        except ValueError:
            expected = False
        assert row.ok == expected, row.ip
