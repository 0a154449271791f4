"""Throughput of ``webtraffic simulate --events``: to Kafka, to a file, and generation alone.

The generation rate uses a sink that drops everything.

    .venv/bin/python benchmarks/bench_simulator.py [--events N] [--runs K]

Uses the broker at the configured bootstrap if one answers, else starts one on the state folder
(``LocalKafkaBroker(Settings.from_env())``) and stops it afterwards. Each Kafka run goes to a
fresh 3-partition topic, deleted afterwards. Prints every run and the median in events/s; the
rate is records over the wall time of the whole ``simulate()`` call (generation, sending, the
final flush, the offsets and the Parquet ledger). It reports, it never fails on a time.
"""

from __future__ import annotations

import argparse
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


def timed(make_sink: Callable[[], object], events: int, ledger: Path) -> float:
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
    args = parser.parse_args()

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
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ledger = Path(tmp) / "ledger.parquet"
            rates: dict[str, list[float]] = {"kafka": [], "file": [], "generation": []}
            for _ in range(args.runs):
                topic = f"bench.simulator.{uuid.uuid4().hex[:8]}"
                admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=30)
                try:
                    rates["kafka"].append(
                        timed(lambda t=topic: KafkaSink(settings, t), args.events, ledger)
                    )
                finally:
                    admin.delete_topics([topic])[topic].result(timeout=30)
                out = Path(tmp) / "events.jsonl"
                rates["file"].append(timed(lambda o=out: FileSink(o), args.events, ledger))
                rates["generation"].append(timed(NullSink, args.events, ledger))
            for name, values in rates.items():
                report(name, values)
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
