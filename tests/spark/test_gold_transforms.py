"""Gold's pure transforms on tiny hand-written batch DataFrames, and its watermark in a stream.

Classifications are compared with the simulator's own labels (its catalogue of user agents says
which are bots, tablets and phones); the IP anonymisation with Python's ``ipaddress``. The
aggregations' watermark is exercised on a Parquet folder read as a stream, written batch by
batch, so every micro-batch is known; ``WEBTRAFFIC_GOLD_WATERMARK`` is checked against Spark.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from webtraffic import gold
from webtraffic.settings import Settings
from webtraffic.simulator.catalogs import BOT_AGENTS, HUMAN_AGENTS

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def _python_anonymised(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


IPS = [
    "81.2.69.142", "10.1.2.3", "0.0.0.0", "255.255.255.255", "192.168.0.1",
    "2001:db8:85a3::8a2e:370:7334", "2001:0DB8:0000:0000:0000:0000:0000:0001", "::1", "::",
    "fe80::1", "2001:db8::", "2a00:1450:4001:81c::200e", "2001:0:0:1::1", "0:0:1::",
    "1::", "1:2::", "1:2:3::", "::ffff:192.0.2.128", "64:ff9b::192.0.2.33",
    "2001:db8:aaaa:bbbb:cccc:dddd:1.2.3.4", "0:0:0:0:0:0:0:1", "2001:db8:0:1:1:1:1:1",
    "abcd:ef01:2345:6789:abcd:ef01:2345:6789", "0:1:0::", "0:0:ab::1",
]  # fmt: skip


def test_ip_anonymisation_matches_python_ipaddress(spark):
    df = spark.createDataFrame([(ip,) for ip in IPS], "ip STRING")
    got = dict(df.select("ip", gold.anonymise_ip(F.col("ip")).alias("anon")).collect())
    assert got == {ip: _python_anonymised(ip) for ip in IPS}


def test_ip_anonymisation_of_many_random_addresses(spark):
    import random

    rng = random.Random(5)
    ips = []
    for _ in range(400):
        v6 = ipaddress.IPv6Address(rng.getrandbits(128))
        # Zero runs in various places, compressed by str().
        groups = [rng.choice([0, 0, rng.getrandbits(16)]) for _ in range(8)]
        ips.append(str(ipaddress.IPv6Address(sum(g << (16 * (7 - i)) for i, g in
                                                 enumerate(groups)))))  # fmt: skip
        ips.append(v6.exploded.upper())
        ips.append(str(ipaddress.IPv4Address(rng.getrandbits(32))))
    df = spark.createDataFrame([(ip,) for ip in ips], "ip STRING")
    got = df.select("ip", gold.anonymise_ip(F.col("ip")).alias("anon")).collect()
    wrong = [(r.ip, r.anon) for r in got if r.anon != _python_anonymised(r.ip)]
    assert not wrong


def _ua_rows():
    rows = []
    for _, cls, family, _major, os_family, _osr, device in HUMAN_AGENTS:
        rows.append((family, device, os_family, cls))
    for _, family, _major, device, _header in BOT_AGENTS:
        rows.append((family, device, "Other", "bot"))
    rows += [
        ("Chrome", "Other", "Linux", "desktop"),
        ("curl", "Other", "Other", "bot"),
        ("Firefox Mobile", "Generic Smartphone", "Android", "mobile"),
        ("Mobile Safari", "iPad", "iOS", "tablet"),
        ("Amazon Silk", "Kindle", "Android", "tablet"),
        (None, None, None, "desktop"),
    ]
    return rows


def test_bot_flag_and_device_class_agree_with_the_simulator_catalogue(spark):
    rows = _ua_rows()
    df = spark.createDataFrame(
        rows, "ua_family STRING, device_family STRING, os_family STRING, expected STRING"
    )
    bot = gold.is_bot(F.col("ua_family"), F.col("device_family"))
    out = df.select(
        "ua_family",
        "device_family",
        "expected",
        bot.alias("is_bot"),
        gold.device_class(F.col("ua_family"), F.col("device_family"), F.col("os_family"), bot)
        .alias("cls"),
    ).collect()  # fmt: skip
    for r in out:
        assert r.cls == r.expected, (r.ua_family, r.device_family)
        assert r.is_bot == (r.expected == "bot"), (r.ua_family, r.device_family)


@pytest.mark.parametrize(
    ("referrer_host", "host", "expected"),
    [
        (None, "www.learnhub.example", "direct"),
        ("", "www.learnhub.example", "direct"),
        ("www.learnhub.example", "www.learnhub.example", "internal"),
        ("learnhub.example", "www.learnhub.example", "internal"),
        ("www.google.com", "www.learnhub.example", "search"),
        ("www.google.co.uk", "www.learnhub.example", "search"),
        ("duckduckgo.com", "a.example", "search"),
        ("search.yahoo.com", "a.example", "search"),
        ("yandex.ru", "a.example", "search"),
        ("www.bing.com", "a.example", "search"),
        ("t.co", "a.example", "social"),
        ("www.facebook.com", "a.example", "social"),
        ("news.ycombinator.com", "a.example", "social"),
        ("www.reddit.com", "a.example", "social"),
        ("someblog.example.net", "a.example", "other"),
        ("notgoogle.example", "a.example", "other"),
        ("googleusercontent.example.org", "a.example", "other"),
    ],
)
def test_referrer_class(spark, referrer_host, host, expected):
    df = spark.createDataFrame([(referrer_host, host)], "referrer_host STRING, host STRING")
    got = df.select(gold.referrer_class(F.col("referrer_host"), F.col("host"))).first()[0]
    assert got == expected


def _events(spark, rows, first_offset=0):
    """Minimal enriched rows: (visitor, seconds after T0, path, event_type[, host[, kafka_s]]).

    ``kafka_s`` is the Kafka timestamp in seconds after T0; by default the event time (an
    on-time event). Offsets count from ``first_offset``.
    """
    data = []
    for i, (visitor, seconds, path, event_type, *rest) in enumerate(rows, start=first_offset):
        host = rest[0] if rest else "a.example"
        kafka_s = rest[1] if len(rest) > 1 else seconds
        data.append((
            f"e{i}", event_type, T0 + timedelta(seconds=seconds), visitor,
            visitor.startswith("u:"), host, path, "direct", None, "DE", "Berlin", "Berlin",
            "desktop", False, "t", 0, i, T0 + timedelta(seconds=kafka_s),
        ))  # fmt: skip
    schema = (
        "event_id STRING, event_type STRING, event_time TIMESTAMP, visitor_key STRING, "
        "is_logged_in BOOLEAN, host STRING, page_path STRING, referrer_class STRING, "
        "referrer_host STRING, country_code STRING, region STRING, city STRING, "
        "device_class STRING, is_bot BOOLEAN, kafka_topic STRING, kafka_partition INT, "
        "kafka_offset BIGINT, kafka_ts TIMESTAMP"
    )
    return spark.createDataFrame(data, schema)


def test_traffic_minute_on_a_batch(spark):
    df = _events(spark, [
        ("h:a", 0, "/", "page_view"),
        ("h:a", 59.999, "/x", "click"),
        ("h:b", 60, "/", "page_view"),  # exactly on the boundary: the next window
        ("h:a", 61, "/", "page_view"),
    ])  # fmt: skip
    rows = {r.window_start: r for r in gold.traffic_minute(df).collect()}
    first, second = rows[T0.replace(tzinfo=None)], rows[(T0 + timedelta(minutes=1)).replace(
        tzinfo=None)]  # fmt: skip
    assert (first.events, first.page_views, first.unique_visitors) == (2, 1, 1)
    assert (second.events, second.page_views, second.unique_visitors) == (2, 2, 2)
    assert second.window_end == (T0 + timedelta(minutes=2)).replace(tzinfo=None)


def test_sessions_on_a_batch_gap_rule_and_visitors_apart(spark):
    gap = 300
    df = _events(spark, [
        # split: 5 min + 1 s
        ("h:split", 0, "/a", "page_view"),
        ("h:split", gap + 1, "/b", "page_view"),
        # whole: 4 min 59 s, three events
        ("h:whole", 0, "/a", "page_view"),
        ("h:whole", gap - 1, "/b", "click"),
        ("h:whole", 2 * gap - 2, "/c", "page_view"),
        # exactly the gap apart: one session (Spark merges an event starting at the end)
        ("h:exact", 0, "/a", "page_view"),
        ("h:exact", gap, "/a", "page_view"),
        # an anonymous and a logged-in visitor on the same IP are different keys
        ("u:7", 10, "/a", "page_view"),
        ("a:cookie", 10, "/a", "page_view"),
    ])  # fmt: skip
    got = {}
    for r in gold.sessions(df).collect():
        got.setdefault(r.visitor_key, []).append(r)
    assert len(got["h:split"]) == 2
    assert all(s.events == 1 and s.is_bounce for s in got["h:split"])
    (whole,) = got["h:whole"]
    assert (whole.events, whole.page_views, whole.distinct_pages) == (3, 2, 3)
    assert (whole.entry_page, whole.exit_page) == ("/a", "/c")
    assert whole.session_start == T0.replace(tzinfo=None)
    assert whole.session_end == (T0 + timedelta(seconds=2 * gap - 2 + gap)).replace(tzinfo=None)
    assert whole.duration_s == 2 * gap - 2
    assert not whole.is_bounce
    assert len(got["h:exact"]) == 1
    assert len(got["u:7"]) == len(got["a:cookie"]) == 1
    assert got["u:7"][0].is_logged_in
    assert not got["a:cookie"][0].is_logged_in
    assert got["u:7"][0].session_id != got["a:cookie"][0].session_id
    ids = [s.session_id for sessions in got.values() for s in sessions]
    assert len(ids) == len(set(ids))


def _naive(seconds: float) -> datetime:
    """T0 + ``seconds`` as Spark returns it (a naive UTC datetime)."""
    return (T0 + timedelta(seconds=seconds)).replace(tzinfo=None)


FUTURE_S = 20 * 60
"""A valid client clock running 20 minutes ahead (the contract allows up to an hour)."""


def test_effective_event_time_caps_the_event_time_at_the_kafka_timestamp(spark):
    df = _events(spark, [
        ("h:a", 10, "/", "page_view"),  # on time
        ("h:a", 10, "/", "page_view", "a.example", 40),  # late: arrived 30 s after
        ("h:a", FUTURE_S + 5, "/", "page_view", "a.example", 5),  # from the future
    ])  # fmt: skip
    no_kafka_ts = _events(spark, [("h:a", 7, "/", "page_view")], first_offset=3)
    df = df.union(no_kafka_ts.withColumn("kafka_ts", F.lit(None).cast("timestamp")))
    got = df.select("kafka_offset", gold.effective_event_time()).orderBy("kafka_offset").collect()
    assert [r[1] for r in got] == [_naive(10), _naive(10), _naive(5), _naive(7)]


def test_an_event_from_the_future_counts_in_the_window_of_its_kafka_timestamp(spark):
    df = _events(spark, [
        ("h:a", 10, "/a", "page_view"),
        ("h:b", FUTURE_S + 5, "/b", "page_view", "a.example", 15),
        ("h:b", 40, "/c", "click"),
    ])  # fmt: skip
    minute = gold.traffic_minute(df).collect()
    assert [(r.window_start, r.events, r.unique_visitors) for r in minute] == [(_naive(0), 3, 2)]
    (b,) = [s for s in gold.sessions(df).collect() if s.visitor_key == "h:b"]
    # Counted at arrival: it is the session's first event, 25 s before the click.
    assert (b.first_event_time, b.last_event_time, b.duration_s) == (_naive(15), _naive(40), 25)
    assert (b.entry_page, b.exit_page, b.session_start) == ("/b", "/c", _naive(15))


def _run_available_now(spark, source, schema, checkpoints, results):
    """One available-now run of both aggregations over the Parquet folder ``source``."""
    stream = spark.readStream.schema(schema).parquet(str(source))
    for name, transform in (("minute", gold.traffic_minute), ("sessions", gold.sessions)):

        def keep(batch, _batch_id, name=name):
            results[name] += batch.collect()

        query = (
            transform(stream)
            .writeStream.outputMode("append")
            .foreachBatch(keep)
            .option("checkpointLocation", str(checkpoints / name))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination(300)
        assert query.exception() is None


def test_a_future_event_does_not_push_the_watermark_over_on_time_events(spark, tmp_path):
    source, checkpoints = tmp_path / "enriched", tmp_path / "checkpoints"
    results: dict[str, list] = {"minute": [], "sessions": []}
    batches = [
        # An on-time event, and a valid one whose client clock runs 20 minutes ahead. On the
        # raw event time the watermark would jump to T0 + 19:45 and drop the next batch.
        [("h:n", 10, "/", "page_view"), ("h:f", FUTURE_S + 10, "/", "page_view", "a.example", 11)],
        [("h:n", 15, "/x", "click"), ("h:n", 20, "/y", "page_view")],  # on time, seconds later
        # Two flushes, each in its own batch: the watermark passes every window and session.
        [("h:flush", 5 * 60, "/", "page_view")],
        [("h:flush", 11 * 60, "/", "page_view")],
    ]
    offset = 0
    schema = None
    for rows in batches:
        df = _events(spark, rows, first_offset=offset)
        offset += len(rows)
        schema = df.schema
        df.write.mode("append").parquet(str(source))
        _run_available_now(spark, source, schema, checkpoints, results)

    first = [r for r in results["minute"] if r.window_start == _naive(0)]
    assert [(r.events, r.page_views, r.unique_visitors) for r in first] == [(4, 3, 2)]
    assert {r.window_start for r in results["minute"]} == {_naive(0), _naive(5 * 60)}
    sessions = {s.visitor_key: s for s in results["sessions"]}
    assert set(sessions) == {"h:n", "h:f", "h:flush"}
    n = sessions["h:n"]
    assert (n.events, n.first_event_time, n.last_event_time) == (3, _naive(10), _naive(20))
    assert (n.entry_page, n.exit_page) == ("/", "/y")
    assert sessions["h:f"].first_event_time == _naive(11)


# --- WEBTRAFFIC_GOLD_WATERMARK -----------------------------------------------------------------


def test_every_accepted_gold_watermark_is_a_spark_interval(spark):
    df = _events(spark, [("h:a", 10, "/", "page_view")])
    for raw in ("2 minutes", "90 SECONDS", "1 minute 30 seconds", "500 milliseconds", "1 week"):
        watermark = Settings.from_env({"WEBTRAFFIC_GOLD_WATERMARK": raw}).gold_watermark
        assert gold.traffic_minute(df, watermark).count() == 1
        assert gold.sessions(df, watermark).count() == 1
