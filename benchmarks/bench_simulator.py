"""Throughput of ``webtraffic simulate --events``: to Kafka, to a file, and generation alone.

The generation rate uses a sink that drops everything.

    .venv/bin/python benchmarks/bench_simulator.py [--events N] [--runs K] [--workers 1,2]

Uses the broker at the configured bootstrap if one answers, else starts one on the state folder
(``LocalKafkaBroker(Settings.from_env())``) and stops it afterwards. Each Kafka run goes to a
fresh 3-partition topic, deleted afterwards. Prints every run and the median in events/s; the
rate is records over the wall time of the whole ``simulate()`` call (generation, sending, the
final flush, the offsets and the Parquet ledger). Kafka and file runs are repeated for each
worker count of ``--workers`` (``simulate(workers=N)``); generation alone uses one process.
It reports, it never fails on a time; it prints the load average, as the figures depend on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from webtraffic.settings import Settings
from webtraffic.simulator.run import FileSink, KafkaSink, simulate

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class NullSink:
    """Drops every record: what is left is generation (and the ledger)."""

    name = "nothing"

    def send(self, key: bytes | None, value: bytes) -> None:
        """Drops the record."""
        del key, value

    def close(self) -> None:
        """Nothing to close."""
        return None


def broker_reachable(settings: Settings) -> bool:
    """Whether a broker answers at the configured bootstrap."""
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(settings.kafka.client_config()).list_topics(timeout=5)
    except Exception:
        return False
    return True


def timed(make_sink: Callable[[], object], events: int, ledger: Path, workers: int = 1) -> float:
    """One run of ``events`` records; returns events/s over the whole ``simulate()`` call."""
    started = time.perf_counter()
    summary, _ = simulate(
        make_sink(),  # type: ignore[arg-type]
        seed=42,
        events=events,
        start=START,
        ledger_path=ledger,
        progress=False,
        rows=False,
        workers=workers,
    )
    seconds = time.perf_counter() - started
    assert summary.records == events
    return events / seconds


def report(name: str, rates: list[float]) -> None:
    """Prints the median and every run."""
    runs = ", ".join(f"{r:,.0f}" for r in rates)
    print(f"{name:<12} median {statistics.median(rates):>9,.0f} events/s   runs: {runs}")


def main() -> int:
    """Runs the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]

    settings = Settings.from_env()
    broker = None
    if not broker_reachable(settings):
        from webtraffic.kafka_broker import LocalKafkaBroker

        print(f"no broker at {settings.kafka.bootstrap_servers}: starting one", file=sys.stderr)
        broker = LocalKafkaBroker(settings)
        broker.start()
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.kafka.client_config())
    bootstrap = settings.kafka.bootstrap_servers
    print(f"{args.events:,} events per run, {args.runs} runs, broker {bootstrap}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ledger = Path(tmp) / "ledger.parquet"
            rates: dict[str, list[float]] = {}
            for _ in range(args.runs):
                for workers in counts:
                    suffix = "" if workers == 1 else f" x{workers}"
                    topic = f"bench.simulator.{uuid.uuid4().hex[:8]}"
                    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=30)
                    try:
                        rates.setdefault("kafka" + suffix, []).append(
                            timed(lambda t=topic: KafkaSink(settings, t), args.events, ledger,
                                  workers)
                        )  # fmt: skip
                    finally:
                        admin.delete_topics([topic])[topic].result(timeout=30)
                    out = Path(tmp) / "events.jsonl"
                    rates.setdefault("file" + suffix, []).append(
                        timed(lambda o=out: FileSink(o), args.events, ledger, workers)
                    )
                rates.setdefault("generation", []).append(timed(NullSink, args.events, ledger))
            for name, values in rates.items():
                report(name, values)
            print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
