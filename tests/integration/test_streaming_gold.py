"""Gold on the real broker, Spark and catalog, reconciled with the simulator's oracle.

The watermark makes the admitted set depend on micro-batch boundaries, so the tests make them
known: records go to Kafka in chunks, and after each chunk the pipeline runs available-now with no
rate limit on gold's Iceberg read, so each gold aggregation batch holds exactly one chunk. The
expected results come from ``webtraffic.simulator.oracle`` (plain Python, no pipeline code).
Final events far later in event time push the watermark past everything before them, so every
window and session of the real events is closed (append mode writes only closed ones).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from tests.integration.test_streaming_bronze_silver import settings_for
from webtraffic.simulator import oracle
from webtraffic.simulator.run import simulate
from webtraffic.streaming import QUERIES, StreamOptions, run_streams

pytestmark = pytest.mark.integration

MIN_MS = 60_000
GAP_MS = 5 * MIN_MS
DELAY_MS = 30_000

UA = {
    "family": "Chrome", "major": "120", "minor": "0", "patch": "1",
    "device": {"family": "Other", "major": None, "minor": None, "patch": None},
    "os": {"family": "Windows", "major": "11", "minor": None, "patch": None},
}  # fmt: skip


class _CaptureSink:
    """Keeps (key, value) in send order; the test produces them to Kafka chunk by chunk."""

    name = "memory"

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes]] = []

    def send(self, key: bytes | None, value: bytes) -> None:
        self.records.append((key, value))

    def close(self) -> None:
        return None


def _producer(settings):
    from confluent_kafka import Producer

    return Producer({**settings.kafka.client_config(), "enable.idempotence": True})


def _produce(settings, topic: str, records) -> None:
    producer = _producer(settings)
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def _event(t: datetime, *, host: str, path: str = "/", ip: str = "81.2.69.142",
           user_id: int | None = None, anonymous_id: str | None = None,
           event_type: str = "page_view", event_id: str | None = None) -> bytes:  # fmt: skip
    body = {
        "url": f"https://{host}{path}",
        "referrer": None,
        "user_id": user_id,
        "academy_id": 1,
        "user_agent": UA,
        "headers": {"user-agent": "Mozilla/5.0"},
        "host": host,
        "ip": ip,
        "event_time": t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event_type": event_type,
    }
    if anonymous_id:
        body["anonymous_id"] = anonymous_id
    if event_id:
        body["event_id"] = event_id
    return json.dumps(body, separators=(",", ":")).encode()


def _run(spark, run_settings) -> list[str]:
    return run_streams(
        spark, run_settings, ["bronze", "silver", "gold"], StreamOptions(available_now=True)
    )


def _ms(ts: datetime) -> int:
    return int(ts.replace(tzinfo=UTC).timestamp() * 1000)


def streaming_sessions(events, batch_of, delay_ms=DELAY_MS, gap_ms=GAP_MS):
    """Spark's streaming session windows, simulated batch by batch from the oracle's events.

    Per batch: rows whose ``[t, t + gap)`` ends at or before the watermark are dropped; the rest
    merge with the visitor's sessions still in state (an event joins a session when it starts at
    or before the session's end); after the batch, sessions ending at or before the new
    watermark are emitted and leave the state. A late event can thus open a new session beside
    one already emitted: ``oracle.sessions`` on the admitted events would merge the two.

    Returns:
        ``(visitor_key, first_event_ms, last_event_ms, events)`` of every emitted session (the
        ones still open at the end are left out) and the per-batch watermarks.
    """
    by_batch = defaultdict(list)
    for row in events:
        by_batch[batch_of(row)].append(row)
    state: dict[str, list[list[int]]] = defaultdict(list)  # visitor -> [[first, last, n]]
    emitted = []
    max_seen = watermark = -(2**62)
    for batch in sorted(by_batch):
        for row in by_batch[batch]:
            t = row["event_time_ms"]
            if t + gap_ms <= watermark:
                continue
            sessions = state[row["visitor_key"]]
            sessions.append([t, t, 1])
            sessions.sort()
            merged: list[list[int]] = []
            for s in sessions:
                if merged and s[0] <= merged[-1][1] + gap_ms:
                    last = merged[-1]
                    last[1], last[2] = max(last[1], s[1]), last[2] + s[2]
                else:
                    merged.append(list(s))
            state[row["visitor_key"]] = merged
        max_seen = max(max_seen, max(r["event_time_ms"] for r in by_batch[batch]))
        watermark = max(watermark, max_seen - delay_ms)
        for key, sessions in state.items():
            emitted += [(key, *s) for s in sessions if s[1] + gap_ms <= watermark]
            state[key] = [s for s in sessions if s[1] + gap_ms > watermark]
    return sorted(emitted)


def test_gold_reconciles_with_the_oracle_across_chunks(spark, settings, new_topic, tmp_path):
    chunks = 3
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    sink = _CaptureSink()
    _, ledger = simulate(sink, seed=31, events=24_000, start=start, span_s=1800,
                         progress=False)  # fmt: skip
    assert sum(1 for r in ledger if r["late_by_ms"] and r["late_by_ms"] > 60_000) > 20
    run = settings_for(settings, new_topic, str(tmp_path / "checkpoints"))
    size = -(-len(ledger) // chunks)

    def chunk_of(row) -> int:
        return row["seq"] // size

    query_ids: list[str] = []
    for k in range(chunks):
        _produce(settings, new_topic, sink.records[k * size : (k + 1) * size])
        query_ids += _run(spark, run)
    # Two flush events, each an hour later, in their own batches: afterwards the watermark is
    # past every real event, whatever the late-event rule of the first flush batch.
    flush_at = [start + timedelta(hours=1, minutes=30), start + timedelta(hours=2, minutes=30)]
    for i, t in enumerate(flush_at):
        _produce(settings, new_topic, [(b"flush", _event(t, host="flush.example",
                                                         event_id=f"flush-{i}"))])  # fmt: skip
        query_ids += _run(spark, run)

    valid = oracle.valid_unique(ledger)
    flush_rows = [
        {"seq": len(ledger) + i, "event_time_ms": _ms(t), "visitor_key": "flush",
         "chunk": chunks + i}
        for i, t in enumerate(flush_at)
    ]  # fmt: skip
    stream = [{**r, "chunk": chunk_of(r)} for r in valid] + flush_rows
    admitted, dropped = oracle.watermark_split(stream, batch_of=lambda r: r["chunk"])
    admitted = [r for r in admitted if r["visitor_key"] != "flush"]
    assert len(dropped) > 0, "the run must exercise the watermark"

    # gold.events_enriched: every valid unique event once, no raw IP.
    enriched = spark.table("gold.events_enriched").where(F.col("kafka_topic") == new_topic)
    assert "ip" not in enriched.columns
    ids = [r.event_id for r in enriched.select("event_id").collect()]
    assert len(ids) == len(set(ids))
    assert set(ids) == {r["event_id"] for r in valid} | {"flush-0", "flush-1"}
    labels = {
        r.event_id: (r.is_bot, r.device_class)
        for r in enriched.select("event_id", "is_bot", "device_class").collect()
    }
    assert all(labels[r["event_id"]] == (r["is_bot"], r["device_class"]) for r in valid)

    # gold.traffic_minute by (window, host, device class) == oracle, for every window.
    minute = spark.table("gold.traffic_minute").where(F.col("host") != "flush.example")
    got = defaultdict(lambda: [0, 0, 0, 0])
    for r in minute.collect():
        g = got[(_ms(r.window_start), r.host, r.device_class)]
        for i, v in enumerate((r.events, r.page_views, r.unique_visitors, r.bot_events)):
            g[i] += v
    expected = oracle.minute_counts(admitted, dims=("host", "device_class"))
    # Only this test's windows: the table is shared by the session's tests.
    ours = {k: tuple(v) for k, v in got.items() if k[1] in {r["host"] for r in admitted}}
    ours = {k: v for k, v in ours.items() if _in_range(k[0], admitted)}
    assert ours == {
        k: (c.events, c.page_views, c.unique_visitors, c.bot_events) for k, c in expected.items()
    }
    assert sum(v[0] for v in ours.values()) == len(admitted)

    # gold.sessions == Spark's session rule applied to the chunks by the oracle's events.
    keys = {r["visitor_key"] for r in valid}
    sessions = (
        spark.table("gold.sessions")
        .where(
            F.col("visitor_key").isin(list(keys))
            # the simulator's visits start before ``start`` (its warm-up)
            & (F.col("session_start") >= start - timedelta(hours=1))
        )
        .collect()
    )
    got_sessions = sorted(
        (s.visitor_key, _ms(s.first_event_time), _ms(s.last_event_time), s.events) for s in sessions
    )
    expected_sessions = [
        s for s in streaming_sessions(stream, batch_of=lambda r: r["chunk"]) if s[0] != "flush"
    ]
    assert got_sessions == expected_sessions
    # oracle.sessions on the events the session watermark admits (end = t + gap) agrees on
    # every session no late event reopened (a late event beside an emitted session opens a
    # new one in Spark; the oracle would merge them): count, bounds, events, pages, bounce.
    session_admitted = oracle.watermark_split(
        stream, batch_of=lambda r: r["chunk"], end_of=lambda t: t + GAP_MS
    )[0]
    exact = oracle.sessions([r for r in session_admitted if r["visitor_key"] != "flush"])
    by_key = {(s.visitor_key, _ms(s.first_event_time)): s for s in sessions}
    same = [e for e in exact if (e.visitor_key, e.first_event_ms) in by_key
            and by_key[(e.visitor_key, e.first_event_ms)].events == e.events]  # fmt: skip
    assert len(same) >= 0.99 * len(exact)
    assert abs(len(exact) - len(sessions)) <= 0.01 * len(exact)
    for e in same:
        s = by_key[(e.visitor_key, e.first_event_ms)]
        assert (_ms(s.last_event_time), s.page_views, s.distinct_pages) == (
            e.last_event_ms, e.page_views, e.distinct_pages)  # fmt: skip
        assert _ms(s.session_end) == e.end_ms
        assert s.is_bounce == (e.page_views == 1)
        assert (s.entry_page, s.exit_page) == (e.entry_path, e.exit_path)

    # The drops reached ops.stream_progress: per batch, the minute query dropped rows.
    progress = spark.table("ops.stream_progress").where(F.col("query_id").isin(query_ids))
    drops = {
        r.query_name: r.dropped
        for r in progress.groupBy("query_name")
        .agg(F.sum("rows_dropped_by_watermark").alias("dropped"))
        .collect()
    }
    assert drops["gold_traffic_minute"] > 0
    assert set(QUERIES["gold"]) <= set(drops)


def _in_range(window_ms: int, admitted) -> bool:
    lo = min(r["event_time_ms"] for r in admitted) - MIN_MS
    hi = max(r["event_time_ms"] for r in admitted) + MIN_MS
    return lo <= window_ms <= hi


def test_gold_edges_boundary_gap_visitors_and_a_late_event(spark, settings, new_topic, tmp_path):
    host = f"edge-{new_topic[-8:]}.example"
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    def ev(seconds, key, **kw):
        return (key.encode(), _event(at(seconds), host=host, **kw))

    batch1 = [
        ev(0, "w0", anonymous_id="w0", path="/start"),  # exactly on a window start
        ev(59.999, "w0", anonymous_id="w0", path="/end"),
        ev(60, "w1", anonymous_id="w1", path="/boundary"),  # exactly on the next boundary
        # kept whole by 4 min 59 s
        ev(0, "whole", anonymous_id="whole", path="/a"),
        ev(299, "whole", anonymous_id="whole", path="/b", event_type="click"),
        # split by 5 min 1 s
        ev(0, "split", anonymous_id="split", path="/a"),
        ev(301, "split", anonymous_id="split", path="/b"),
        # an anonymous and a logged-in visitor on the same IP
        ev(10, "u7", user_id=7, ip="203.0.113.9", path="/x"),
        ev(10, "anon", ip="203.0.113.9", path="/x"),
        ev(600, "push", anonymous_id="push"),  # watermark -> t0 + 9 min 30 s
    ]
    run = settings_for(settings, new_topic, str(tmp_path / "checkpoints"))
    _produce(settings, new_topic, batch1)
    ids = _run(spark, run)
    # Too late: its window [t0, t0+1m) ended long before the watermark; its session too.
    _produce(settings, new_topic, [ev(30, "late", anonymous_id="late", path="/late",
                                      event_id="late-event")])  # fmt: skip
    ids += _run(spark, run)
    _produce(settings, new_topic, [ev(3600, "flush", anonymous_id="flush")])
    ids += _run(spark, run)
    _produce(settings, new_topic, [ev(7200, "flush", anonymous_id="flush")])
    ids += _run(spark, run)

    enriched = spark.table("gold.events_enriched").where(F.col("kafka_topic") == new_topic)
    assert enriched.where("event_id = 'late-event'").count() == 1  # enriched keeps it
    anon = {r.visitor_key for r in enriched.where("ip_anonymised = '203.0.113.0'").collect()}
    assert len(anon) == 2
    assert "u:7" in anon

    minute = {
        r.window_start.replace(tzinfo=UTC): r
        for r in spark.table("gold.traffic_minute")
        .where(F.col("host") == host)
        .groupBy("window_start")
        .agg(F.sum("events").alias("events"), F.sum("page_views").alias("page_views"),
             F.sum("unique_visitors").alias("unique_visitors"))
        .collect()
    }  # fmt: skip
    first, second = minute[at(0)], minute[at(60)]
    # w0 x2, whole, split, u7, anon (not the late event)
    assert (first.events, first.unique_visitors) == (6, 5)
    assert (second.events, second.page_views) == (1, 1)
    assert sum(r.events for r in minute.values()) == len(batch1) + 1  # + first flush, closed

    rows = (
        spark.table("gold.sessions")
        .where(F.col("host") == host)
        .select("visitor_key", "events", "session_start", "session_end", "entry_page",
                "exit_page", "is_bounce", "is_logged_in", "page_views")
        .collect()
    )  # fmt: skip
    by_visitor = defaultdict(list)
    for r in rows:
        by_visitor[r.visitor_key].append(r)
    (whole,) = by_visitor["a:whole"]
    assert (whole.events, whole.page_views, whole.entry_page, whole.exit_page) == (
        2, 1, "/a", "/b")  # fmt: skip
    assert whole.session_end.replace(tzinfo=UTC) == at(299 + 300)
    assert whole.is_bounce
    assert sorted(r.events for r in by_visitor["a:split"]) == [1, 1]
    assert len(by_visitor["u:7"]) == 1
    assert by_visitor["u:7"][0].is_logged_in
    anonymous = [k for k in by_visitor if k.startswith("h:")]
    assert len(anonymous) == 1
    assert not by_visitor[anonymous[0]][0].is_logged_in
    assert "a:late" not in by_visitor

    progress = spark.table("ops.stream_progress").where(F.col("query_id").isin(ids))
    dropped = Counter()
    for r in progress.select("query_name", "rows_dropped_by_watermark").collect():
        dropped[r.query_name] += r.rows_dropped_by_watermark or 0
    assert dropped["gold_traffic_minute"] >= 1
    assert dropped["gold_sessions"] >= 1
