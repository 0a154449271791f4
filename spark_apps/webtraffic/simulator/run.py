"""Runs a simulation: model -> records -> sink (Kafka or a file) -> ledger, with progress.

Two ways to pace it:

* ``events``: N records as fast as possible, nominal times spread over ``span`` from ``start``
  (for replays, tests and benchmarks); deterministic bytes for a given seed and start.
* ``realtime``: ``rate`` records per second for ``duration`` seconds; an on-time record's event
  time is its send time.

``replay`` sends an existing JSON-lines file to Kafka line by line, unchanged, and writes a ledger
whose validity verdicts come from the reference classifier in ``oracle.py``.
"""

from __future__ import annotations

import functools
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from webtraffic.contract import MAX_FUTURE_SKEW, fingerprint, visitor_key
from webtraffic.errors import WebtrafficError
from webtraffic.settings import Settings
from webtraffic.simulator import oracle
from webtraffic.simulator.ledger import write_ledger
from webtraffic.simulator.records import Imperfections, Record, RecordStream
from webtraffic.simulator.traffic import TrafficModel, TrafficProfile


@dataclass
class SimulationSummary:
    """What a run produced, for the one-line summary and for callers."""

    records: int = 0
    valid_unique: int = 0
    malformed: int = 0
    duplicates: int = 0
    late: int = 0
    late_beyond_watermark: int = 0
    out_of_order: int = 0
    seconds: float = 0.0
    sink: str = ""
    ledger: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Records per second of wall time."""
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary printed at the end of a run."""
        text = (
            f"produced {self.records:,} records to {self.sink} in {self.seconds:.2f} s "
            f"({self.rate:,.0f}/s): {self.valid_unique:,} valid unique, {self.malformed:,} "
            f"malformed, {self.duplicates:,} duplicates, {self.late:,} late "
            f"({self.late_beyond_watermark:,} beyond 30 s), {self.out_of_order:,} out of order"
        )
        return text + (f"; ledger {self.ledger}" if self.ledger else "")


class Progress:
    """A progress line with rate on a terminal; silent when stderr is not a terminal."""

    def __init__(self, total: int | None, enabled: bool | None = None) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, force: bool = False) -> None:
        """Redraws at most 5 times a second."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        rate = done / max(now - self.started, 1e-9)
        if self.total:
            width = 30
            filled = int(width * done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            text = f"\r[{bar}] {done:,}/{self.total:,} records  {rate:,.0f}/s"
        else:
            text = f"\r{done:,} records  {rate:,.0f}/s"
        sys.stderr.write(text)
        sys.stderr.flush()

    def close(self, done: int) -> None:
        """Draws the final state and ends the line."""
        if self.enabled:
            self.update(done, force=True)
            sys.stderr.write("\n")


# --- sinks ---------------------------------------------------------------------------------------


class KafkaSink:
    """Produces records to a topic with an idempotent producer (no duplicates of its own)."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        from confluent_kafka import Producer

        self.topic = topic or settings.kafka.topic
        self.name = f"kafka topic {self.topic}"
        self._deliveries: dict[int, tuple[int, int, int]] = {}
        self._errors: list[str] = []
        self._producer = Producer(
            {
                **settings.kafka.client_config(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.num.messages": 10_000,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "message.max.bytes": 1_000_000,
            }
        )
        self._sent = 0

    def _delivered(self, seq: int, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))
            return
        self._deliveries[seq] = (msg.partition(), msg.offset(), msg.timestamp()[1])

    def send(self, seq: int, key: bytes | None, value: bytes) -> None:
        """Queues one record; blocks briefly when the local queue is full."""
        callback = functools.partial(self._delivered, seq)
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=callback)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._sent += 1
        if self._sent % 2000 == 0:
            self._producer.poll(0)

    def close(self, timeout: float = 60.0) -> dict[int, tuple[int, int, int]]:
        """Waits for every delivery report.

        Returns:
            ``{seq: (partition, offset, kafka timestamp ms)}``.

        Raises:
            WebtrafficError: Some records were not delivered.
        """
        remaining = self._producer.flush(timeout)
        if remaining or self._errors:
            first = self._errors[0] if self._errors else "timed out"
            raise WebtrafficError(
                f"{remaining + len(self._errors)} records were not delivered to {self.topic} "
                f"({first})"
            )
        return self._deliveries


class FileSink:
    """Writes each record's value as one line of a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.name = f"file {path}"
        self._file = path.open("wb")

    def send(self, seq: int, key: bytes | None, value: bytes) -> None:
        """Appends the value and a newline (values never contain a raw newline)."""
        del seq, key
        self._file.write(value + b"\n")

    def close(self) -> dict[int, tuple[int, int, int]]:
        """Closes the file; a file has no Kafka coordinates."""
        self._file.close()
        return {}


Sink = KafkaSink | FileSink


# --- the run ---------------------------------------------------------------------------------


def _ledger_row(record: Record, delivery: tuple[int, int, int] | None) -> dict[str, Any]:
    partition, offset, kafka_ts = delivery if delivery else (None, None, None)
    valid, reason = record.valid, record.reason
    # The contract measures the future against the Kafka timestamp: honour it for every record.
    if (
        valid
        and kafka_ts is not None
        and record.event_time_ms is not None
        and record.event_time_ms > kafka_ts + MAX_FUTURE_SKEW.total_seconds() * 1000
    ):
        valid, reason = False, "future_event_time"
    return {
        "seq": record.seq,
        "event_id": record.event_id,
        "valid": valid,
        "reason": reason,
        "duplicate_of": record.duplicate_of,
        "late_by_ms": record.late_by_ms,
        "out_of_order": record.out_of_order,
        "partition": partition,
        "offset": offset,
        "kafka_ts_ms": kafka_ts,
        "send_ms": record.nominal_ms,
        "event_time_ms": record.event_time_ms,
        "visitor_key": record.visitor_key,
        "key": record.key.decode(),
        "host": record.host,
        "path": record.path,
        "event_type": record.event_type,
        "is_bot": record.is_bot,
        "device_class": record.device_class,
        "ip": record.ip,
        "size": len(record.value),
    }


def _summarise(rows: list[dict[str, Any]], summary: SimulationSummary) -> None:
    summary.records = len(rows)
    summary.valid_unique = len(oracle.valid_unique(rows))
    summary.malformed = sum(1 for r in rows if not r["valid"])
    summary.duplicates = sum(1 for r in rows if r["duplicate_of"] is not None)
    originals = [r for r in rows if r["duplicate_of"] is None]
    summary.late = sum(1 for r in originals if r["late_by_ms"] > 0)
    summary.late_beyond_watermark = sum(
        1 for r in originals if r["late_by_ms"] > oracle.WATERMARK_DELAY_MS
    )
    summary.out_of_order = sum(1 for r in rows if r["out_of_order"])
    reasons: dict[str, int] = {}
    for r in rows:
        if r["reason"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    summary.reasons = dict(sorted(reasons.items()))


def simulate(
    sink: Sink,
    *,
    seed: int = 42,
    events: int | None = None,
    start: datetime | None = None,
    span_s: float = 3600.0,
    rate: float | None = None,
    duration_s: float | None = None,
    profile: TrafficProfile | None = None,
    imperfections: Imperfections | None = None,
    ledger_path: Path | None = None,
    progress: bool | None = None,
) -> tuple[SimulationSummary, list[dict[str, Any]]]:
    """Generates traffic into ``sink`` and writes the ledger.

    Give either ``events`` (as fast as possible over ``span_s`` from ``start``) or ``rate`` and
    ``duration_s`` (real time, starting now).

    Returns:
        The summary and the ledger rows (send order).

    Raises:
        ValueError: Inconsistent pacing arguments or rates.
    """
    profile = profile or TrafficProfile()
    imperfections = imperfections or Imperfections()
    imperfections.validate()
    rng = random.Random(seed)
    model = TrafficModel(rng, profile)
    per_visit = model.expected_events_per_visit()

    if events is not None:
        if events < 1 or span_s <= 0:
            raise ValueError("--events must be at least 1 and --span positive")
        if rate is not None or duration_s is not None:
            raise ValueError("give either --events or --rate/--duration, not both")
        start = start or datetime.fromtimestamp((time.time() // 60) * 60 - span_s, UTC)
        start_ms = int(start.timestamp() * 1000)
        visits_per_s = events / span_s / per_visit
        clock: Callable[[int], int] = lambda nominal_ms: nominal_ms  # noqa: E731
        stop: Callable[[int, int], bool] = lambda emitted, _t: emitted >= events  # noqa: E731
        total: int | None = events
    else:
        if rate is None or duration_s is None or rate <= 0 or duration_s <= 0:
            raise ValueError("real-time mode needs a positive --rate and --duration")
        start_ms = int(time.time() * 1000)
        end_ms = start_ms + int(duration_s * 1000)
        visits_per_s = rate / per_visit
        clock = _realtime_clock
        stop = lambda _emitted, nominal_ms: nominal_ms >= end_ms  # noqa: E731
        total = None

    # A warm-up: visits in progress and returning visitors at the start, as on a real site.
    warmup_ms = 900_000
    views = model.page_views(start_ms, visits_per_s, warmup_ms)
    stream = RecordStream(views, rng, imperfections, clock)
    bar = Progress(total, progress)
    records: list[Record] = []
    started = time.monotonic()
    try:
        for record in stream.records(stop):
            sink.send(record.seq, record.key, record.value)
            records.append(record)
            if len(records) % 1000 == 0:
                bar.update(len(records))
    finally:
        deliveries = sink.close()
    elapsed = time.monotonic() - started
    bar.close(len(records))
    rows = [_ledger_row(r, deliveries.get(r.seq)) for r in records]
    summary = SimulationSummary(seconds=elapsed, sink=sink.name)
    _summarise(rows, summary)
    if ledger_path is not None:
        write_ledger(rows, ledger_path)
        summary.ledger = str(ledger_path)
    return summary, rows


def _realtime_clock(nominal_ms: int) -> int:
    """Waits until the nominal send time and returns the actual time (epoch ms)."""
    delay = nominal_ms / 1000 - time.time()
    if delay > 0:
        time.sleep(delay)
    return int(time.time() * 1000)


def _iter_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as src:
        for line in src:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def replay(
    sink: KafkaSink,
    path: Path,
    ledger_path: Path | None = None,
    progress: bool | None = None,
) -> tuple[SimulationSummary, list[dict[str, Any]]]:
    """Sends each line of a JSON-lines file to Kafka unchanged and writes a ledger.

    The key is the visitor key when the line is a JSON object, else none. Validity and reason
    come from the reference classifier against the Kafka timestamp of each record.

    Raises:
        WebtrafficError: The file does not exist.
    """
    if not path.is_file():
        raise WebtrafficError(f"replay file {path} does not exist")
    bar = Progress(None, progress)
    started = time.monotonic()
    sent: list[tuple[bytes, bytes | None]] = []
    try:
        for seq, value in enumerate(_iter_lines(path)):
            key = _replay_key(value)
            sink.send(seq, key, value)
            sent.append((value, key))
            if seq % 1000 == 0:
                bar.update(seq)
    finally:
        deliveries = sink.close()
    elapsed = time.monotonic() - started
    bar.close(len(sent))
    rows = []
    seen: dict[str, int] = {}
    for seq, (value, key) in enumerate(sent):
        partition, offset, kafka_ts = deliveries[seq]
        rows.append(_replay_row(seq, value, key, partition, offset, kafka_ts, seen))
    summary = SimulationSummary(seconds=elapsed, sink=sink.name)
    _summarise(rows, summary)
    if ledger_path is not None:
        write_ledger(rows, ledger_path)
        summary.ledger = str(ledger_path)
    return summary, rows


def _replay_key(value: bytes) -> bytes | None:
    try:
        obj = json.loads(value)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    user_id = obj.get("user_id") if isinstance(obj.get("user_id"), int) else None
    anonymous_id = obj.get("anonymous_id") if isinstance(obj.get("anonymous_id"), str) else None
    ip = obj.get("ip") if isinstance(obj.get("ip"), str) else None
    ua = obj.get("user_agent") if isinstance(obj.get("user_agent"), dict) else None
    return visitor_key(user_id, anonymous_id, ip, ua).encode()


def _replay_row(
    seq: int,
    value: bytes,
    key: bytes | None,
    partition: int,
    offset: int,
    kafka_ts: int,
    seen: dict[str, int],
) -> dict[str, Any]:
    reason = oracle.classify(value, kafka_ts)
    obj: dict[str, Any] = {}
    if reason is None:
        obj = json.loads(value)
    event_id = obj.get("event_id") or fingerprint(value)
    duplicate_of = seen.get(event_id) if reason is None else None
    if reason is None and duplicate_of is None:
        seen[event_id] = seq
    event_ms = oracle.parse_event_time_ms(obj["event_time"]) if obj else None
    url = str(obj.get("url") or "")
    path = "/" + url.split("://", 1)[-1].split("/", 1)[1].split("?")[0] if "/" in url[8:] else "/"
    return {
        "seq": seq,
        "event_id": event_id,
        "valid": reason is None,
        "reason": reason,
        "duplicate_of": duplicate_of,
        "late_by_ms": max(0, kafka_ts - event_ms) if event_ms is not None else 0,
        "out_of_order": False,
        "partition": partition,
        "offset": offset,
        "kafka_ts_ms": kafka_ts,
        "send_ms": kafka_ts,
        "event_time_ms": event_ms,
        "visitor_key": key.decode() if key else None,
        "key": key.decode() if key else None,
        "host": obj.get("host"),
        "path": path if obj else None,
        "event_type": obj.get("event_type", "page_view") if obj else None,
        "is_bot": None,
        "device_class": None,
        "ip": obj.get("ip"),
        "size": len(value),
    }
