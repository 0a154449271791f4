"""Benchmark: bronze and silver throughput with ``--available-now`` over pre-produced events.

Runs on real components in an isolated stack: its own state folder ``<state>/bench-streaming``
(the user's catalog and broker are untouched), its own Kafka broker on free ports, the project's
SparkSession. Per run: a fresh topic filled by the simulator (default imperfections), then the
bronze queries until caught up, then the silver queries; throughput is records per second of
wall time of each layer (JVM already warm after the first run). Prints every run and the median;
never fails on a time.

    .venv/bin/python benchmarks/bench_streaming.py [--events 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta


def _isolated_environment() -> None:
    from webtraffic.settings import Settings, use_isolated_stack

    state = Settings.from_env().state_dir / "bench-streaming"
    shutil.rmtree(state, ignore_errors=True)
    use_isolated_stack(state, WEBTRAFFIC_SPARK_DRIVER_MEMORY="4g")


def main() -> int:
    """Runs the benchmark and prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    _isolated_environment()

    from confluent_kafka.admin import AdminClient, NewTopic

    from webtraffic.kafka_broker import LocalKafkaBroker
    from webtraffic.settings import Settings
    from webtraffic.simulator.run import KafkaSink, simulate
    from webtraffic.spark_session import build_spark_session
    from webtraffic.streaming import StreamOptions, run_streams

    settings = Settings.from_env()
    broker = LocalKafkaBroker(settings)
    broker.start()
    spark = build_spark_session(
        settings, "webtraffic-bench-streaming", {"spark.ui.enabled": "false"}
    )
    results: dict[str, list[float]] = {"bronze": [], "silver": []}
    try:
        for run in range(1, args.runs + 1):
            topic = f"bench.{uuid.uuid4().hex[:8]}"
            admin = AdminClient(settings.kafka.client_config())
            admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
            start = datetime.now(UTC) - timedelta(hours=3)
            summary, _ = simulate(KafkaSink(settings, topic), events=args.events, start=start,
                                  span_s=3 * 3600, seed=run, progress=False)  # fmt: skip
            run_settings = dataclasses.replace(
                settings,
                kafka=dataclasses.replace(settings.kafka, topic=topic),
                checkpoint_root=str(settings.state_dir / "checkpoints" / topic),
            )
            for layer in ("bronze", "silver"):
                began = time.monotonic()
                run_streams(spark, run_settings, [layer], StreamOptions(available_now=True))
                seconds = time.monotonic() - began
                rate = summary.records / seconds
                results[layer].append(rate)
                print(
                    f"run {run}: {layer:6} {summary.records:,} records in {seconds:6.1f} s "
                    f"= {rate:,.0f} records/s",
                    flush=True,
                )
    finally:
        spark.stop()
        broker.stop()
    print()
    print(f"available-now throughput over {args.events:,} pre-produced events (2 cores, local[*]):")
    for layer, rates in results.items():
        if rates:
            runs = ", ".join(f"{r:,.0f}" for r in rates)
            print(f"  {layer:6} median {statistics.median(rates):,.0f} records/s  (runs: {runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
