"""The simulator against the real broker: the ledger's Kafka coordinates are the truth."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, TopicPartition

from webtraffic.contract import fingerprint
from webtraffic.settings import Settings
from webtraffic.simulator.ledger import read_ledger
from webtraffic.simulator.run import FileSink, KafkaSink, replay, simulate

pytestmark = pytest.mark.integration


def read_topic(settings: Settings, topic: str, partitions: int = 3) -> dict[tuple[int, int], tuple]:
    """Every record of the topic: (partition, offset) -> (key, value, timestamp ms)."""
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"verify-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in range(partitions)
    }
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    found: dict[tuple[int, int], tuple] = {}
    done: set[int] = {p for p, end in ends.items() if end == 0}
    deadline = time.monotonic() + 120
    try:
        while len(done) < partitions and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=5000, timeout=1.0):
                if msg.error():
                    if msg.error().code() == -191:  # _PARTITION_EOF
                        done.add(msg.partition())
                        continue
                    raise AssertionError(msg.error())
                found[(msg.partition(), msg.offset())] = (
                    msg.key(),
                    msg.value(),
                    msg.timestamp()[1],
                )
    finally:
        consumer.close()
    assert sum(ends.values()) == len(found)
    return found


def test_fifty_thousand_events_ledger_matches_the_topic(
    kafka_broker, settings, new_topic, tmp_path
):
    ledger_path = tmp_path / "ledger.parquet"
    summary, _ = simulate(
        KafkaSink(settings, new_topic),
        seed=5,
        events=50_000,
        start=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        ledger_path=ledger_path,
        progress=False,
    )
    assert summary.records == 50_000
    ledger = read_ledger(ledger_path)
    on_topic = read_topic(settings, new_topic)
    assert len(on_topic) == len(ledger) == 50_000
    coordinates = {(r["partition"], r["offset"]) for r in ledger}
    assert coordinates == set(on_topic)
    for row in ledger:
        key, value, ts = on_topic[(row["partition"], row["offset"])]
        assert key.decode() == row["key"] == row["visitor_key"]
        assert ts == row["kafka_ts_ms"]
        assert len(value) == row["size"]
        if row["valid"]:
            payload = json.loads(value)
            assert row["event_id"] == payload.get("event_id", fingerprint(value))
        else:
            assert row["event_id"] == fingerprint(value)
    # Keyed by visitor: one visitor, one partition.
    partitions_of: dict[str, set[int]] = {}
    for row in ledger:
        partitions_of.setdefault(row["visitor_key"], set()).add(row["partition"])
    assert all(len(p) == 1 for p in partitions_of.values())


def test_workers_each_produce_to_their_own_partitions(kafka_broker, settings, new_topic, tmp_path):
    ledger_path = tmp_path / "ledger.parquet"
    summary, _ = simulate(
        KafkaSink(settings, new_topic),
        seed=6,
        events=30_000,
        start=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        ledger_path=ledger_path,
        progress=False,
        workers=2,
    )
    assert summary.records == 30_000
    ledger = read_ledger(ledger_path)
    on_topic = read_topic(settings, new_topic)
    assert len(on_topic) == len(ledger) == 30_000
    assert {(r["partition"], r["offset"]) for r in ledger} == set(on_topic)
    for row in ledger:
        key, value, ts = on_topic[(row["partition"], row["offset"])]
        assert key.decode() == row["key"]
        assert ts == row["kafka_ts_ms"]
        assert len(value) == row["size"]
    # Worker w owns the partitions p % 2 == w; within a partition, seq follows the offsets.
    assert all(r["partition"] % 2 == r["worker"] for r in ledger)
    for partition in range(3):
        rows = [r for r in ledger if r["partition"] == partition]
        assert [r["offset"] for r in rows] == sorted(r["offset"] for r in rows)


def test_replay_sends_a_file_unchanged_with_a_ledger(kafka_broker, settings, new_topic, tmp_path):
    source = tmp_path / "captured.jsonl"
    simulate(FileSink(source), seed=9, events=2_000, progress=False)
    lines = source.read_bytes().split(b"\n")[:-1]
    summary, rows = replay(
        KafkaSink(settings, new_topic), source, tmp_path / "replay.jsonl", progress=False
    )
    assert summary.records == len(lines) == len(rows)
    on_topic = read_topic(settings, new_topic)
    for line, row in zip(lines, rows, strict=True):
        assert on_topic[(row["partition"], row["offset"])][1] == line
    assert sum(1 for r in rows if not r["valid"]) == summary.malformed > 0
    assert sum(1 for r in rows if r["duplicate_of"] is not None) == summary.duplicates > 0


def test_realtime_mode_event_time_is_send_time(kafka_broker, settings, new_topic, tmp_path):
    summary, rows = simulate(
        KafkaSink(settings, new_topic),
        seed=1,
        rate=150,
        duration_s=2,
        imperfections=None,
        progress=False,
    )
    assert 150 <= summary.records <= 600
    on_time = [r for r in rows if r["valid"] and r["late_by_ms"] == 0 and not r["out_of_order"]]
    assert on_time
    # The producer stamps the record right after the event time is taken (generous bounds: the
    # machine may be busy; the point is that on-time events carry their send time, not a
    # nominal time minutes away).
    assert all(0 <= r["kafka_ts_ms"] - r["event_time_ms"] < 5000 for r in on_time)
    assert 1.5 < summary.seconds < 15


def test_cli_simulate_to_kafka(kafka_broker, settings, new_topic, tmp_path):
    ledger = tmp_path / "cli.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "webtraffic.cli", "simulate", "--events", "3000", "--topic",
         new_topic, "--ledger", str(ledger), "--seed", "4"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout.startswith(f"produced 3,000 records to kafka topic {new_topic}")
    assert len(read_ledger(ledger)) == 3000


def test_offsets_stay_exact_when_another_producer_interleaves(kafka_broker, settings, new_topic):
    # Two sinks on one topic: each sees its partitions' ends move by more than it sent, so it
    # reads the range back and finds its own records in order.
    first, second = KafkaSink(settings, new_topic), KafkaSink(settings, new_topic)
    sent: dict[int, list[tuple[bytes, bytes]]] = {0: [], 1: []}
    for i in range(3000):
        which = i % 2
        key, value = f"k{i % 37}".encode(), f'{{"n":{i},"by":{which}}}'.encode()
        (first if which == 0 else second).send(key, value)
        sent[which].append((key, value))
    coordinates = [first.close(), second.close()]
    on_topic = read_topic(settings, new_topic)
    assert len(on_topic) == 3000
    for which in (0, 1):
        c = coordinates[which]
        for i, (key, value) in enumerate(sent[which]):
            found = on_topic[(c.partition[i], c.offset[i])]
            assert (found[0], found[1], found[2]) == (key, value, c.timestamp_ms[i])
