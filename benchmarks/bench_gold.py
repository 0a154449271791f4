"""Gold layer: realtime latency, realtime completeness and available-now throughput.

    .venv/bin/python benchmarks/bench_gold.py [--rate 2000] [--duration 180] [--events 1000000]
                                              [--skip-realtime] [--skip-throughput]

Runs on a stack of its own (state in ``.state/bench/gold-<pid>``, a broker on free ports, its
own Iceberg catalog), so a running ``make run`` stack is never touched and the tables hold only
the benchmark's rows.

1. Realtime: ``webtraffic stream all`` (one Spark application, 5-second triggers) runs while the
   simulator sends ``--rate`` events/s for ``--duration`` seconds. Delays come from Iceberg's
   own metadata: each data file's adding snapshot gives the time its rows became visible.
   * send -> visible in ``gold.events_enriched``: snapshot commit time minus the record's Kafka
     timestamp (set by the producer when it sent the record);
   * window end -> row in ``gold.traffic_minute``: snapshot commit time minus ``window_end``
     (at least the 30 s watermark plus up to one trigger).
   * completeness: the share of the valid unique events of the closed windows that landed in a
     window row, and the oracle's figure for the same ledger (5-second batches) and for other
     watermark delays.
2. Available-now throughput: ``--events`` simulated events to Kafka, bronze + silver, then gold
   (enriched, then the two aggregations) timed separately, in this process's SparkSession.

Prints figures; never fails on a time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from webtraffic.processes import wait_until
from webtraffic.settings import PROJECT_ROOT, Settings, use_isolated_stack


def _environment() -> Settings:
    base = Settings.from_env()
    return use_isolated_stack(base.state_dir / "bench" / f"gold-{os.getpid()}")


def _topic(settings: Settings, prefix: str) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"{prefix}.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(settings.kafka.client_config())
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(30)
    return name


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _added_files(catalog: Any, table: str) -> list[tuple[str, float]]:
    """(data file path, commit time in epoch s) of every file appended to ``table``."""
    t = catalog.load_table(table)
    committed = {s.snapshot_id: s.timestamp_ms / 1000 for s in t.snapshots()}
    entries = t.inspect.entries().to_pylist()
    return [
        (e["data_file"]["file_path"], committed[e["snapshot_id"]])
        for e in entries
        if e["status"] == 1 and e["snapshot_id"] in committed
    ]


def _read(path: str, columns: list[str]) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(path.removeprefix("file://"), columns=columns)


def _enriched_rows(settings: Settings, topic: str) -> int:
    """Rows of ``topic`` in ``gold.events_enriched`` (0 while the table does not exist)."""
    from pyiceberg.expressions import EqualTo

    from webtraffic.catalog import load_catalog

    try:
        table = load_catalog(settings).load_table("gold.events_enriched")
    except Exception:  # the table may not exist yet
        return 0
    scan = table.scan(row_filter=EqualTo("kafka_topic", topic), selected_fields=("event_id",))
    return scan.to_arrow().num_rows


def _commits(settings: Settings, table: str) -> int:
    """Snapshots of ``table`` so far (0 while it does not exist)."""
    from webtraffic.catalog import load_catalog

    try:
        return len(load_catalog(settings).load_table(table).snapshots())
    except Exception:  # the table may not exist yet
        return 0


def realtime(settings: Settings, rate: float, duration: float) -> None:
    """Latency and completeness of ``stream all`` under realtime traffic."""
    from webtraffic.catalog import load_catalog
    from webtraffic.simulator import oracle
    from webtraffic.simulator.run import KafkaSink, simulate

    topic = _topic(settings, "bench.gold.realtime")
    log_path = settings.state_dir / "logs" / "bench-stream.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WEBTRAFFIC_KAFKA_TOPIC": topic}
    print(f"realtime: {rate:,.0f} events/s for {duration:.0f} s into {topic}, stream all")
    with log_path.open("w") as log:
        app = subprocess.Popen(
            [sys.executable, "-m", "webtraffic.cli", "stream", "all"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=PROJECT_ROOT,
        )  # fmt: skip
    try:
        started = wait_until(
            lambda: app.poll() is not None or "query gold_sessions started" in log_path.read_text(),
            240,
            1.0,
        )
        if not started or app.poll() is not None:
            raise SystemExit(f"the stream did not start; see {log_path}")
        summary, ledger = simulate(
            KafkaSink(settings, topic), seed=7, rate=rate, duration_s=duration, progress=False
        )
        print(f"  simulator: {summary.line()}")
        sent_at = time.monotonic()
        valid = len(oracle.valid_unique(ledger))
        caught_up = wait_until(lambda: _enriched_rows(settings, topic) >= valid, 900, 5.0)
        print(
            f"  the stream caught up {time.monotonic() - sent_at:.0f} s after the last send"
            if caught_up
            else "  the stream had not caught up 900 s after the last send"
        )
        # The aggregations' next trigger after the catch-up writes the windows it closed.
        before = _commits(settings, "gold.traffic_minute")
        wait_until(lambda: _commits(settings, "gold.traffic_minute") > before, 120, 1.0)
    finally:
        app.terminate()
        app.wait(120)

    catalog = load_catalog(settings)
    delays = []
    for path, committed in _added_files(catalog, "gold.events_enriched"):
        rows = _read(path, ["kafka_ts", "kafka_topic"]).to_pylist()
        delays += [committed - r["kafka_ts"].replace(tzinfo=UTC).timestamp() for r in rows
                   if r["kafka_topic"] == topic]  # fmt: skip
    window_delays = []
    landed_rows: list[tuple[float, int]] = []
    for path, committed in _added_files(catalog, "gold.traffic_minute"):
        table = _read(path, ["window_start", "window_end", "events"]).to_pylist()
        for r in table:
            end = r["window_end"].replace(tzinfo=UTC).timestamp()
            window_delays.append(committed - end)
            start = r["window_start"].replace(tzinfo=UTC).timestamp() * 1000
            landed_rows.append((start, r["events"]))
    print(
        f"  send -> visible in gold.events_enriched: p50 {_pct(delays, 0.5):.1f} s, "
        f"p95 {_pct(delays, 0.95):.1f} s ({len(delays):,} rows)"
    )
    if window_delays:
        print(
            f"  window end -> row in gold.traffic_minute: p50 {_pct(window_delays, 0.5):.1f} s, "
            f"p95 {_pct(window_delays, 0.95):.1f} s ({len(window_delays):,} rows)"
        )
    _query_table(catalog)
    valid = oracle.valid_unique(ledger)
    # Completeness over the whole minutes of the run that closed: from the first minute that
    # starts after the first send (earlier minutes hold only late events, sent after the run
    # began) to the last window written. Counting those edge minutes would bias the figure down.
    first_send = min(r["kafka_ts_ms"] or r["send_ms"] for r in ledger)
    first = oracle.window_start_ms(first_send) + oracle.MINUTE_MS
    last = max((start for start, _ in landed_rows), default=first - oracle.MINUTE_MS)

    def in_scope(start_ms: float) -> bool:
        return first <= start_ms <= last

    landed = sum(n for start, n in landed_rows if in_scope(start))
    expected = [r for r in valid if in_scope(oracle.window_start_ms(oracle.effective_time_ms(r)))]
    if expected:
        minutes = int((last - first) / oracle.MINUTE_MS) + 1
        print(
            f"  completeness (measured, {minutes} whole minutes of the run): {landed:,} of "
            f"{len(expected):,} valid unique events landed in a window = "
            f"{100 * landed / len(expected):.3f} %"
        )
    _completeness_table(valid, in_scope)


def _query_table(catalog: Any) -> None:
    """Per query: micro-batches, median and p95 batch duration, and the largest Kafka lag."""
    import statistics

    rows = catalog.load_table("ops.stream_progress").scan().to_arrow().to_pylist()
    per_query: dict[str, list[dict]] = {}
    for row in rows:
        if row["num_input_rows"]:
            per_query.setdefault(row["query_name"], []).append(row)
    for name, batches in sorted(per_query.items()):
        durations = [b["batch_duration_ms"] / 1000 for b in batches]
        lags = [b["lag_records"] for b in batches if b["lag_records"] is not None]
        print(
            f"  {name:22} {len(batches):4} batches, duration median "
            f"{statistics.median(durations):5.1f} s, p95 {_pct(durations, 0.95):5.1f} s"
            + (f", largest Kafka lag {max(lags):,} records" if lags else "")
        )


def _completeness_table(valid: list[dict], in_scope: Callable[[float], bool]) -> None:
    """The oracle's completeness for several watermark delays, over the same minutes."""
    from webtraffic.simulator import oracle

    ordered = sorted(valid, key=lambda r: r["seq"])
    scope = [r for r in ordered if in_scope(oracle.window_start_ms(oracle.effective_time_ms(r)))]
    if not scope:
        return
    for delay_s in (30, 60, 120, 300):
        shares = []
        for batch_ms in (None, 5000):
            batch_of = None if batch_ms is None else (lambda r, b=batch_ms: r["send_ms"] // b)
            admitted, _ = oracle.watermark_split(ordered, delay_ms=delay_s * 1000,
                                                 batch_of=batch_of)  # fmt: skip
            kept = sum(
                1 for r in admitted
                if in_scope(oracle.window_start_ms(oracle.effective_time_ms(r)))
            )  # fmt: skip
            shares.append(100 * kept / len(scope))
        print(
            f"  completeness (oracle, same minutes, watermark {delay_s:>3} s): per-record "
            f"batches {shares[0]:.3f} %, 5-second batches {shares[1]:.3f} %"
        )


def throughput(settings: Settings, events: int, gold_max_rows: int | None) -> None:
    """Available-now throughput of gold over ``events`` simulated events."""
    import dataclasses

    from webtraffic.simulator.run import KafkaSink, simulate
    from webtraffic.spark_session import build_spark_session
    from webtraffic.streaming import StreamOptions, run_streams

    topic = _topic(settings, "bench.gold.batch")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    summary, _ = simulate(KafkaSink(settings, topic), seed=11, events=events, start=start,
                          span_s=max(600.0, events / 500), progress=False, rows=False)  # fmt: skip
    print(f"available-now: {summary.line()}")
    run = dataclasses.replace(
        settings,
        kafka=dataclasses.replace(settings.kafka, topic=topic),
        checkpoint_root=str(settings.state_dir / "checkpoints" / topic),
    )
    spark = build_spark_session(
        run, app_name="bench-gold", extra_conf={"spark.ui.enabled": "false"}
    )
    try:
        options = StreamOptions(available_now=True, gold_max_rows_per_trigger=gold_max_rows)
        started = time.perf_counter()
        run_streams(spark, run, ["bronze", "silver"], options)
        upstream = time.perf_counter() - started
        valid = spark.table("silver.events").where(f"kafka_topic = '{topic}'").count()
        started = time.perf_counter()
        run_streams(spark, run, ["gold"], options)
        gold_s = time.perf_counter() - started
        rows = {
            t: spark.table(t).count()
            for t in ("gold.events_enriched", "gold.traffic_minute", "gold.sessions")
        }
    finally:
        spark.stop()
    print(f"  bronze + silver: {events:,} records in {upstream:.1f} s ({events / upstream:,.0f}/s)")
    print(
        f"  gold (enriched, then minute windows and sessions): {valid:,} events in {gold_s:.1f} s "
        f"= {valid / gold_s:,.0f} events/s; rows {rows}"
    )


def main() -> int:
    """Runs the benchmark on its own stack."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--duration", type=float, default=180.0)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--gold-max-rows", type=int, default=None)
    parser.add_argument("--skip-realtime", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--keep-state", action="store_true")
    args = parser.parse_args()

    from webtraffic.catalog import prepare_local_catalog
    from webtraffic.kafka_broker import LocalKafkaBroker

    settings = _environment()
    prepare_local_catalog(settings)
    broker = LocalKafkaBroker(settings)
    broker.start()
    print(f"bench stack in {settings.state_dir} (broker {settings.kafka.bootstrap_servers})")
    try:
        if not args.skip_realtime:
            realtime(settings, args.rate, args.duration)
        if not args.skip_throughput:
            throughput(settings, args.events, args.gold_max_rows)
    finally:
        broker.stop()
        if not args.keep_state:
            shutil.rmtree(settings.state_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
