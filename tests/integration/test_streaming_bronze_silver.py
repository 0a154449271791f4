"""Bronze and silver on the real broker and catalog, reconciled with the simulator's ledger."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from webtraffic.processes import wait_until
from webtraffic.settings import Settings
from webtraffic.simulator import oracle
from webtraffic.simulator.run import KafkaSink, simulate
from webtraffic.streaming import StreamOptions, run_streams
from webtraffic.tables import ensure_tables

pytestmark = pytest.mark.integration


def settings_for(settings: Settings, topic: str, checkpoints: str) -> Settings:
    return dataclasses.replace(
        settings,
        kafka=dataclasses.replace(settings.kafka, topic=topic),
        checkpoint_root=checkpoints,
    )


def produce(settings: Settings, topic: str, events: int, seed: int) -> list[dict]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    _, ledger = simulate(KafkaSink(settings, topic), seed=seed, events=events, start=start,
                         span_s=3600, progress=False)  # fmt: skip
    return ledger


def reconcile(spark, topic: str, ledger: list[dict]) -> None:
    """Bronze, silver and quarantine hold exactly what the ledger says, each row once."""
    bronze = spark.table("bronze.events_raw").where(F.col("kafka_topic") == topic)
    coordinates = [(r.kafka_partition, r.kafka_offset) for r in bronze.select(
        "kafka_partition", "kafka_offset").collect()]  # fmt: skip
    assert len(coordinates) == len(set(coordinates)) == len(ledger), "bronze: lost or repeated"
    assert set(coordinates) == {(r["partition"], r["offset"]) for r in ledger}

    silver_ids = [r.event_id for r in spark.table("silver.events").where(
        F.col("kafka_topic") == topic).select("event_id").collect()]  # fmt: skip
    expected = {r["event_id"] for r in oracle.valid_unique(ledger)}
    assert len(silver_ids) == len(set(silver_ids)), "silver: duplicate event ids"
    assert set(silver_ids) == expected

    quarantined = {
        (r.kafka_partition, r.kafka_offset): r.reason
        for r in spark.table("silver.events_quarantine")
        .where(F.col("kafka_topic") == topic)
        .select("kafka_partition", "kafka_offset", "reason")
        .collect()
    }
    assert quarantined == {
        (r["partition"], r["offset"]): r["reason"] for r in oracle.quarantined(ledger)
    }


def test_fifty_thousand_events_reconcile_with_the_ledger(spark, settings, new_topic, tmp_path):
    ledger = produce(settings, new_topic, 50_000, seed=21)
    assert sum(1 for r in ledger if not r["valid"]) > 500
    assert sum(1 for r in ledger if r["duplicate_of"] is not None) > 200
    run = settings_for(settings, new_topic, str(tmp_path / "checkpoints"))
    started = time.monotonic()
    options = StreamOptions(available_now=True, max_offsets_per_trigger=10_000)
    query_ids = run_streams(spark, run, ["bronze", "silver"], options)
    elapsed = time.monotonic() - started
    reconcile(spark, new_topic, ledger)

    # Every micro-batch of the two queries is in ops.stream_progress.
    progress = spark.table("ops.stream_progress").where(F.col("query_id").isin(query_ids))
    totals = progress.groupBy("query_name").agg(
        F.sum("num_input_rows").alias("rows"), F.count("*").alias("batches")
    )
    per_query = {r.query_name: r for r in totals.collect()}
    assert set(per_query) == {"bronze_events_raw", "silver"}
    assert per_query["bronze_events_raw"].rows == 50_000
    assert per_query["bronze_events_raw"].batches >= 5  # maxOffsetsPerTrigger 10,000
    last_bronze = (
        progress.where("query_name = 'bronze_events_raw'").orderBy(F.desc("batch_id")).first()
    )
    assert last_bronze.lag_records == 0
    print(f"50,000 events through bronze and silver in {elapsed:.1f} s")

    # A second available-now run finds nothing new and writes nothing.
    counts = [spark.table(t).count() for t in ("bronze.events_raw", "silver.events")]
    run_streams(spark, run, ["bronze", "silver"], StreamOptions(available_now=True))
    assert [spark.table(t).count() for t in ("bronze.events_raw", "silver.events")] == counts


def test_sigkill_mid_run_then_restart_loses_and_repeats_nothing(
    spark, settings, new_topic, tmp_path
):
    ledger = produce(settings, new_topic, 30_000, seed=22)
    ensure_tables(spark)
    checkpoints = str(tmp_path / "checkpoints")
    env = {
        **os.environ,
        "WEBTRAFFIC_KAFKA_TOPIC": new_topic,
        "WEBTRAFFIC_CHECKPOINT_ROOT": checkpoints,
    }
    log = (tmp_path / "stream.log").open("w")
    app = subprocess.Popen(
        [sys.executable, "-m", "webtraffic.cli", "stream", "all", "--max-offsets", "3000",
         "--trigger-interval", "1 second"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        # Kill once silver has committed something and bronze is still behind.
        def silver_started() -> bool:
            assert app.poll() is None, (tmp_path / "stream.log").read_text()[-3000:]
            return (
                spark.table("silver.events")
                .where(F.col("kafka_topic") == new_topic)
                .limit(1)
                .count()
                > 0
            )

        assert wait_until(silver_started, timeout=300, interval=1.0)
        bronze_rows = (
            spark.table("bronze.events_raw").where(F.col("kafka_topic") == new_topic).count()
        )
        assert 0 < bronze_rows < len(ledger), "the kill must land mid-run"
    finally:
        os.killpg(app.pid, signal.SIGKILL)
        app.wait(30)
        log.close()
    # Restart from the same checkpoints and finish the backlog.
    run = settings_for(settings, new_topic, checkpoints)
    run_streams(spark, run, ["bronze", "silver"], StreamOptions(available_now=True))
    reconcile(spark, new_topic, ledger)


def test_sigterm_stops_the_queries_cleanly(spark, settings, new_topic, tmp_path):
    ledger = produce(settings, new_topic, 2_000, seed=23)
    ensure_tables(spark)
    env = {
        **os.environ,
        "WEBTRAFFIC_KAFKA_TOPIC": new_topic,
        "WEBTRAFFIC_CHECKPOINT_ROOT": str(tmp_path / "checkpoints"),
    }
    log_path = tmp_path / "stream.log"
    with log_path.open("w") as log:
        app = subprocess.Popen(
            [sys.executable, "-m", "webtraffic.cli", "stream", "bronze",
             "--trigger-interval", "1 second"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:

            def bronze_complete() -> bool:
                assert app.poll() is None, log_path.read_text()[-3000:]
                rows = spark.table("bronze.events_raw").where(F.col("kafka_topic") == new_topic)
                return rows.count() == len(ledger)

            assert wait_until(bronze_complete, timeout=300, interval=1.0)
            app.send_signal(signal.SIGTERM)
            assert app.wait(120) == 0, log_path.read_text()[-3000:]
        finally:
            if app.poll() is None:
                os.killpg(app.pid, signal.SIGKILL)
    text = log_path.read_text()
    assert "SIGTERM received: stopping the queries" in text
    assert "stopped 1 queries cleanly" in text
