"""The oracle on small hand-written cases, where the right answer is known by hand."""

from __future__ import annotations

from datetime import UTC, datetime

from webtraffic.simulator import oracle

T0 = int(datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
S = 1000
MIN = 60 * S


def ev(seq, t, visitor="u:1", path="/", event_type="page_view", host="a.example", bot=False,
       kafka_ts=None):  # fmt: skip
    return {
        "seq": seq, "event_time_ms": t, "visitor_key": visitor, "path": path,
        "event_type": event_type, "host": host, "is_bot": bot, "valid": True,
        "duplicate_of": None, "event_id": f"e{seq}", "kafka_ts_ms": kafka_ts,
    }  # fmt: skip


def test_event_exactly_on_a_window_boundary_opens_the_next_window():
    counts = oracle.minute_counts([ev(0, T0 + MIN - 1), ev(1, T0 + MIN), ev(2, T0 + 2 * MIN - 1)])
    assert counts[(T0, "a.example")].events == 1
    assert counts[(T0 + MIN, "a.example")].events == 2


def test_minute_counts_count_page_views_visitors_and_bots():
    events = [
        ev(0, T0 + 1 * S, "u:1"),
        ev(1, T0 + 2 * S, "u:1", event_type="click"),
        ev(2, T0 + 3 * S, "a:x"),
        ev(3, T0 + 4 * S, "h:y", bot=True),
    ]
    c = oracle.minute_counts(events)[(T0, "a.example")]
    assert (c.events, c.page_views, c.unique_visitors, c.bot_events) == (4, 3, 3, 1)


def test_a_gap_of_five_minutes_and_one_second_splits_a_session():
    events = [ev(0, T0, path="/a"), ev(1, T0 + 5 * MIN + S, path="/b")]
    found = oracle.sessions(events)
    assert [(s.first_event_ms, s.last_event_ms, s.events) for s in found] == [
        (T0, T0, 1),
        (T0 + 5 * MIN + S, T0 + 5 * MIN + S, 1),
    ]


def test_a_gap_of_exactly_five_minutes_or_four_fifty_nine_does_not_split():
    # Spark merges an event that starts exactly at the session's end (t + gap).
    assert len(oracle.sessions([ev(0, T0), ev(1, T0 + 5 * MIN)])) == 1
    joined = oracle.sessions([ev(0, T0, path="/a"), ev(1, T0 + 5 * MIN - S, path="/b")])
    assert len(joined) == 1
    s = joined[0]
    assert (s.events, s.distinct_pages, s.entry_path, s.exit_path) == (2, 2, "/a", "/b")
    assert s.end_ms == T0 + 5 * MIN - S + 5 * MIN


def test_sessions_are_per_visitor():
    found = oracle.sessions([ev(0, T0, "h:1"), ev(1, T0 + S, "h:2"), ev(2, T0 + 2 * S, "h:1")])
    assert sorted((s.visitor_key, s.events) for s in found) == [("h:1", 2), ("h:2", 1)]


def test_a_late_event_beyond_the_watermark_is_dropped():
    events = [
        ev(0, T0 + 10 * S),
        ev(1, T0 + 2 * MIN + 5 * S),  # watermark moves to 12:01:35
        ev(2, T0 + 50 * S),  # its window 12:00-12:01 ended before the watermark: dropped
        ev(3, T0 + 1 * MIN + 40 * S),  # 25 s behind the newest event, its window is open
    ]
    admitted, dropped = oracle.watermark_split(events)
    assert [e["seq"] for e in dropped] == [2]
    assert [e["seq"] for e in admitted] == [0, 1, 3]


def test_a_micro_batch_watermark_is_more_lenient():
    events = [ev(0, T0 + 10 * S), ev(1, T0 + 2 * MIN + 5 * S), ev(2, T0 + 50 * S)]
    # All three in one micro-batch: the watermark only moves after the batch.
    admitted, dropped = oracle.watermark_split(events, batch_of=lambda e: 0)
    assert dropped == []
    assert len(admitted) == 3


def test_valid_unique_drops_invalid_and_repeats():
    rows = [ev(0, T0), {**ev(1, T0), "valid": False}, {**ev(2, T0), "duplicate_of": 0}, ev(3, T0)]
    rows[2]["event_id"] = "e0"
    assert [r["seq"] for r in oracle.valid_unique(rows)] == [0, 3]


def test_classifier_reasons_on_hand_written_records():
    ok = (
        b'{"url":"https://a.example/","host":"a.example","ip":"81.2.69.142",'
        b'"event_time":"2026-12-01T12:00:00.000Z","user_id":null}'
    )
    ts = T0
    assert oracle.classify(ok, ts) is None
    assert oracle.classify(ok.replace(b"81.2.69.142", b"999.1.1.1"), ts) == "invalid_ip"
    assert oracle.classify(ok.replace(b'"user_id":null', b'"user_id":"7"'), ts) == "wrong_type"
    assert (
        oracle.classify(ok.replace(b"2026-12-01T12", b"2027-12-01T12"), ts) == "future_event_time"
    )
    assert oracle.classify(ok.replace(b"T12:00:00.000Z", b"T12:00:00+01:00"), ts) is None
    assert oracle.classify(ok.replace(b"2026-12-01T", b"2026-02-30T"), ts) == "bad_event_time"
    assert oracle.classify(b"[1]", ts) == "not_object"
    assert oracle.classify(b"{", ts) == "not_json"
    assert oracle.classify(b"\xff{}", ts) == "invalid_utf8"
    assert oracle.classify(ok.replace(b'"host":"a.example"', b'"host":""'), ts) == "missing_host"


FUTURE = 20 * MIN  # a valid client clock 20 minutes ahead (the contract allows an hour)


def test_effective_time_is_the_event_time_capped_at_the_kafka_timestamp():
    assert oracle.effective_time_ms(ev(0, T0 + 10 * S, kafka_ts=T0 + 12 * S)) == T0 + 10 * S
    assert oracle.effective_time_ms(ev(1, T0 + FUTURE, kafka_ts=T0 + 12 * S)) == T0 + 12 * S
    assert oracle.effective_time_ms(ev(2, T0 + FUTURE)) == T0 + FUTURE  # no Kafka timestamp
    assert oracle.effective_time_ms({"event_time_ms": T0}) == T0  # a row without the column


def test_an_event_from_the_future_counts_in_the_window_of_its_kafka_timestamp():
    counts = oracle.minute_counts([ev(0, T0 + 10 * S, kafka_ts=T0 + 10 * S),
                                   ev(1, T0 + FUTURE, "a:f", kafka_ts=T0 + 30 * S)])  # fmt: skip
    assert list(counts) == [(T0, "a.example")]
    assert (counts[(T0, "a.example")].events, counts[(T0, "a.example")].unique_visitors) == (2, 2)


def test_an_event_from_the_future_does_not_push_the_watermark():
    events = [
        ev(0, T0 + 10 * S, kafka_ts=T0 + 10 * S),
        ev(1, T0 + FUTURE, "a:f", kafka_ts=T0 + 11 * S),
        ev(2, T0 + 15 * S, kafka_ts=T0 + 15 * S),
    ]
    admitted, dropped = oracle.watermark_split(events)
    assert ([e["seq"] for e in admitted], dropped) == ([0, 1, 2], [])
    # On the raw event time (no Kafka timestamps) the on-time event after it would be dropped.
    raw = [{**e, "kafka_ts_ms": None} for e in events]
    assert [e["seq"] for e in oracle.watermark_split(raw)[1]] == [2]


def test_sessions_order_and_bound_on_the_effective_time():
    found = oracle.sessions([
        ev(0, T0 + FUTURE, path="/future", kafka_ts=T0 + 5 * S),
        ev(1, T0 + 40 * S, path="/later", kafka_ts=T0 + 40 * S),
    ])  # fmt: skip
    assert len(found) == 1
    s = found[0]
    assert (s.first_event_ms, s.last_event_ms, s.events) == (T0 + 5 * S, T0 + 40 * S, 2)
    assert (s.entry_path, s.exit_path) == ("/future", "/later")
