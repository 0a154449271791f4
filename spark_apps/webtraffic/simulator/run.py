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

import gc
import json
import os
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from webtraffic.contract import MAX_FUTURE_SKEW, fingerprint, visitor_key
from webtraffic.errors import WebtrafficError
from webtraffic.settings import Settings
from webtraffic.simulator import catalogs, oracle
from webtraffic.simulator.ledger import (
    LEDGER_COLUMNS,
    rows_from_columns,
    write_ledger,
    write_ledger_columns,
)
from webtraffic.simulator.records import Imperfections, RecordStream, Sent
from webtraffic.simulator.traffic import EVENT_TYPES, TrafficModel, TrafficProfile


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
    """Produces records to a topic with an idempotent producer (no duplicates of its own).

    No per-message delivery callback (it costs more than the produce call): the sink picks each
    record's partition itself from its key (CRC32 modulo the partition count, librdkafka's own
    ``consistent_random`` rule, so one key always lands in one partition), stamps the record's
    timestamp itself, and asks for delivery reports of failures only. After the final flush the
    offsets follow from each partition's end offsets before and after the run: an idempotent
    producer appends in produce order per partition, so the k-th record sent to partition p sits
    at ``start[p] + k``. When another producer wrote to the same partitions meanwhile (the end
    moved by more than this sink sent), the sink reads the range back and finds its records in
    order, so the ledger's coordinates stay exact either way.
    """

    def __init__(
        self, settings: Settings, topic: str | None = None, owned: list[int] | None = None
    ) -> None:
        from confluent_kafka import Consumer, Producer

        self.settings = settings
        self.topic = topic or settings.kafka.topic
        self.name = f"kafka topic {self.topic}"
        self._errors: list[str] = []
        config = settings.kafka.client_config()
        self._producer = Producer(
            {
                **config,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.num.messages": 10_000,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "message.max.bytes": 1_000_000,
                "delivery.report.only.error": True,
                "on_delivery": self._failed,
            }
        )
        self._consumer = Consumer(
            {**config, "group.id": f"webtraffic-simulator-{uuid.uuid4().hex}",
             "enable.auto.commit": False}
        )  # fmt: skip
        metadata = self._producer.list_topics(self.topic, timeout=30)
        topic_meta = metadata.topics.get(self.topic)
        if topic_meta is None or topic_meta.error is not None or not topic_meta.partitions:
            reason = topic_meta.error if topic_meta is not None else "not found"
            raise WebtrafficError(f"Kafka topic {self.topic} is not available ({reason})")
        self.partitions = len(topic_meta.partitions)
        # The partitions this sink writes to: all, or a worker's share of a parallel run (it
        # picks among them by the key's CRC32, so one key still lands in one partition).
        self.owned = owned if owned is not None else list(range(self.partitions))
        self._owned = np.asarray(self.owned, dtype=np.int64)
        self._start = self._ends()
        self._partition_of: dict[bytes | None, int] = {}
        self._sent_partition: list[int] = []
        self._sent_ts: list[int] = []
        self._keys: list[bytes | None] = []
        self._hashes: list[int] = []
        self._unkeyed = 0

    def _failed(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def _ends(self) -> list[int]:
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        deadline = time.monotonic() + 30
        while True:
            try:
                return [
                    self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[
                        1
                    ]
                    for p in range(self.partitions)
                ]
            except KafkaException as exc:
                # A topic created a moment ago may not have its leaders yet.
                error = exc.args[0]
                transient = error.retriable() or error.code() in (
                    KafkaError.NOT_LEADER_FOR_PARTITION,
                    KafkaError.LEADER_NOT_AVAILABLE,
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                )
                if not transient or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def send(self, key: bytes | None, value: bytes) -> None:
        """Queues one record; blocks briefly when the local queue is full."""
        partition = self._partition_of.get(key)
        if partition is None:
            if key is None:
                partition = self.owned[self._unkeyed % len(self.owned)]
                self._unkeyed += 1
            else:
                partition = self.owned[zlib.crc32(key) % len(self.owned)]
                self._partition_of[key] = partition
        timestamp = int(time.time() * 1000)
        produce = self._producer.produce
        while True:
            try:
                produce(self.topic, value, key, partition, timestamp=timestamp)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._sent_partition.append(partition)
        self._sent_ts.append(timestamp)
        self._keys.append(key)
        self._hashes.append(hash(value))
        if len(self._sent_ts) % 10_000 == 0:
            self._producer.poll(0)

    def send_many(
        self, keys: list[bytes], values: list[bytes], crcs: np.ndarray | None = None
    ) -> None:
        """Queues records in order; ``crcs`` (CRC32 of each key) spares hashing the keys again.

        Records are stamped with the clock a few thousand at a time.
        """
        if crcs is None:
            crcs = np.asarray([zlib.crc32(key) for key in keys], dtype=np.int64)
        partitions = self._owned[crcs % len(self._owned)].tolist()
        producer = self._producer
        produce, poll, topic = producer.produce, producer.poll, self.topic
        step = 2000
        for lo in range(0, len(values), step):
            timestamp = int(time.time() * 1000)
            hi = min(lo + step, len(values))
            for key, value, partition in zip(
                keys[lo:hi], values[lo:hi], partitions[lo:hi], strict=True
            ):
                try:
                    produce(topic, value, key, partition, timestamp=timestamp)
                except BufferError:
                    while True:
                        poll(0.05)
                        try:
                            produce(topic, value, key, partition, timestamp=timestamp)
                            break
                        except BufferError:
                            continue
            self._sent_ts.extend([timestamp] * (hi - lo))
            poll(0)
        self._sent_partition.extend(partitions)
        self._keys.extend(keys)
        self._hashes.extend(map(hash, values))

    def close(self, timeout: float = 60.0) -> Coordinates:
        """Waits for every delivery, then works out where each record landed.

        Returns:
            Partition, offset and Kafka timestamp of each record, in send order.

        Raises:
            WebtrafficError: Some records were not delivered.
        """
        try:
            remaining = self._producer.flush(timeout)
            if remaining or self._errors:
                first = self._errors[0] if self._errors else "timed out"
                raise WebtrafficError(
                    f"{remaining + len(self._errors)} records were not delivered to "
                    f"{self.topic} ({first})"
                )
            return self._coordinates()
        finally:
            self._consumer.close()
            # The producer holds this sink's error callback: drop it, or the cycle keeps a
            # client alive (and reconnecting) after the run.
            del self._producer

    def _coordinates(self) -> Coordinates:
        sent_partition = np.asarray(self._sent_partition, dtype=np.int64)
        counts = np.bincount(sent_partition, minlength=self.partitions).tolist()
        ends = self._ends()
        for _ in range(50):  # the high watermark can trail the last acknowledgement briefly
            if all(e - s >= c for s, e, c in zip(self._start, ends, counts, strict=True)):
                break
            time.sleep(0.1)
            ends = self._ends()
        offsets = np.zeros(len(sent_partition), dtype=np.int64)
        for partition in range(self.partitions):
            mine = np.flatnonzero(sent_partition == partition)
            start, end = self._start[partition], ends[partition]
            if not len(mine):
                continue
            if end - start == len(mine):
                offsets[mine] = start + np.arange(len(mine))
            else:
                offsets[mine] = self._read_back(partition, start, end, mine.tolist())
        return Coordinates(self._sent_partition, offsets.tolist(), self._sent_ts)

    def _read_back(self, partition: int, start: int, end: int, mine: list[int]) -> list[int]:
        """Offsets of this sink's records in ``[start, end)`` of a partition others wrote to too.

        Matches key, timestamp and the hash of the value, in order (the idempotent producer
        keeps its order; the values themselves are not kept, a run can send gigabytes).
        """
        from confluent_kafka import TopicPartition

        self._consumer.assign([TopicPartition(self.topic, partition, start)])
        found: list[int] = []
        want = 0
        deadline = time.monotonic() + 120
        position = start
        while position < end and want < len(mine) and time.monotonic() < deadline:
            for msg in self._consumer.consume(num_messages=5000, timeout=1.0):
                if msg.error():
                    continue
                position = msg.offset() + 1
                if want < len(mine):
                    i = mine[want]
                    if (
                        msg.key() == self._keys[i]
                        and hash(msg.value()) == self._hashes[i]
                        and msg.timestamp()[1] == self._sent_ts[i]
                    ):
                        found.append(msg.offset())
                        want += 1
        self._consumer.unassign()
        if len(found) != len(mine):
            raise WebtrafficError(
                f"could not find {len(mine) - len(found)} of this run's records in "
                f"{self.topic} partition {partition} between offsets {start} and {end}"
            )
        return found


class FileSink:
    """Writes each record's value as one line of a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.name = f"file {path}"
        self._file = path.open("wb", buffering=1 << 20)

    def send(self, key: bytes | None, value: bytes) -> None:
        """Appends the value and a newline (values never contain a raw newline)."""
        del key
        self._file.write(value + b"\n")

    def send_many(
        self, keys: list[bytes], values: list[bytes], crcs: np.ndarray | None = None
    ) -> None:
        """Appends the values, one a line."""
        del keys, crcs
        if values:
            self._file.write(b"\n".join(values) + b"\n")

    def close(self) -> None:
        """Closes the file; a file has no Kafka coordinates."""
        self._file.close()


@dataclass
class Coordinates:
    """Where each record landed in Kafka, in send order."""

    partition: list[int]
    offset: list[int]
    timestamp_ms: list[int]


Sink = KafkaSink | FileSink


# --- the run ---------------------------------------------------------------------------------


def _ledger_columns(
    model: TrafficModel, sent: Sent, coordinates: Coordinates | None
) -> dict[str, Any]:
    """The ledger as Arrow columns (``LEDGER_COLUMNS`` order), one entry per record.

    Per-visitor and per-page text is taken from the model's tables, not built per row.
    """
    import pyarrow as pa

    n = len(sent)
    reason = sent.reason
    if coordinates is not None:
        kafka_ts_np = np.asarray(coordinates.timestamp_ms, dtype=np.int64)
        partition = pa.array(np.asarray(coordinates.partition, dtype=np.int64))
        offset = pa.array(np.asarray(coordinates.offset, dtype=np.int64))
        kafka_ts = pa.array(kafka_ts_np)
        # The contract measures the future against the Kafka timestamp: honour it for every
        # record (a run whose --start lies over an hour ahead of the clock).
        skew = int(MAX_FUTURE_SKEW.total_seconds() * 1000)
        future = sent.has_event_time & (sent.event_time_ms > kafka_ts_np + skew)
        future &= np.equal(reason, None)
        if future.any():
            reason = reason.copy()
            reason[future] = "future_event_time"
    else:
        partition = offset = kafka_ts = pa.nulls(n, pa.int64())
    visitor = pa.array(sent.visitor)
    keys = pa.array(model.v_keystr, pa.string()).take(visitor)
    hosts = pa.array([site.host for site in catalogs.SITES], pa.string())
    return {
        "seq": pa.array(np.arange(n, dtype=np.int64)),
        "event_id": pa.array(sent.event_id, pa.string()),
        "valid": pa.array(np.equal(reason, None).astype(bool)),
        "reason": pa.array(reason, pa.string()),
        "duplicate_of": pa.array(sent.duplicate_of, mask=sent.duplicate_of < 0),
        "late_by_ms": pa.array(sent.late_by_ms),
        "out_of_order": pa.array(sent.out_of_order),
        "partition": partition,
        "offset": offset,
        "kafka_ts_ms": kafka_ts,
        "send_ms": pa.array(sent.send_ms),
        "event_time_ms": pa.array(sent.event_time_ms, mask=~sent.has_event_time),
        "visitor_key": keys,
        "key": keys,
        "host": hosts.take(pa.array(model.v_site[sent.visitor])),
        "path": pa.array(model.paths, pa.string()).take(pa.array(sent.page)),
        "event_type": pa.array(list(EVENT_TYPES), pa.string()).take(pa.array(sent.event_type)),
        "is_bot": pa.array(model.v_bot[sent.visitor]),
        "device_class": pa.array(model.v_device, pa.string()).take(visitor),
        "ip": pa.array(model.v_ip, pa.string()).take(visitor),
        "size": pa.array(sent.size),
        "worker": pa.array(np.zeros(n, dtype=np.int64)),
    }


def _arrow(values: Any) -> Any:
    """A ledger column as an Arrow array (lists are converted)."""
    import pyarrow as pa

    return values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)


def _count(mask: Any) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(mask).as_py() or 0)


def _summarise(columns: dict[str, Any], summary: SimulationSummary) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    event_id = _arrow(columns["event_id"])
    valid = _arrow(columns["valid"]).cast(pa.bool_())
    original = pc.is_null(_arrow(columns["duplicate_of"]))
    late_by = _arrow(columns["late_by_ms"]).cast(pa.int64())
    summary.records = len(event_id)
    summary.valid_unique = int(pc.count_distinct(event_id.filter(pc.and_(valid, original))).as_py())
    summary.malformed = summary.records - _count(valid)
    summary.duplicates = summary.records - _count(original)
    late = pc.and_(original, pc.greater(late_by, 0))
    summary.late = _count(late)
    summary.late_beyond_watermark = _count(
        pc.and_(late, pc.greater(late_by, oracle.WATERMARK_DELAY_MS))
    )
    summary.out_of_order = _count(_arrow(columns["out_of_order"]).cast(pa.bool_()))
    reasons = pc.drop_null(_arrow(columns["reason"]).cast(pa.string()))
    counts = pc.value_counts(reasons).to_pylist() if len(reasons) else []
    summary.reasons = {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}


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
    rows: bool = True,
    workers: int = 1,
) -> tuple[SimulationSummary, list[dict[str, Any]]]:
    """Generates traffic into ``sink`` and writes the ledger.

    Give either ``events`` (as fast as possible over ``span_s`` from ``start``) or ``rate`` and
    ``duration_s`` (real time, starting now). ``rows=False`` returns an empty list instead of
    the ledger rows as dicts (large runs that only need the ledger file).

    ``workers > 1`` (with ``events`` and a Kafka or file sink) splits the run over that many
    processes, see :func:`_simulate_parallel`.

    Returns:
        The summary and the ledger rows (send order).

    Raises:
        ValueError: Inconsistent pacing arguments or rates.
    """
    profile = profile or TrafficProfile()
    imperfections = imperfections or Imperfections()
    imperfections.validate()
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if events is not None and (events < 1 or span_s <= 0):
        raise ValueError("--events must be at least 1 and --span positive")
    if workers > 1:
        if events is None or rate is not None or duration_s is not None:
            raise ValueError("--workers goes with --events")
        start = start or datetime.fromtimestamp((time.time() // 60) * 60 - span_s, UTC)
        return _simulate_parallel(
            sink, workers, seed=seed, events=events, start=start, span_s=span_s,
            profile=profile, imperfections=imperfections, ledger_path=ledger_path, rows=rows,
        )  # fmt: skip
    model = TrafficModel(seed, profile)
    columns, elapsed = _produce(
        sink, model, imperfections, events=events, start=start, span_s=span_s, rate=rate,
        duration_s=duration_s, progress=progress,
    )  # fmt: skip
    summary = SimulationSummary(seconds=elapsed, sink=sink.name)
    return summary, _finish(columns, summary, ledger_path, rows)


def _finish(
    columns: dict[str, Any], summary: SimulationSummary, ledger_path: Path | None, rows: bool
) -> list[dict[str, Any]]:
    """Writes the ledger (in a thread: Arrow writes without the GIL) while summarising."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        written = pool.submit(write_ledger_columns, columns, ledger_path) if ledger_path else None
        _summarise(columns, summary)
        result = rows_from_columns(columns) if rows else []
        if written is not None:
            written.result()
            summary.ledger = str(ledger_path)
    return result


def _produce(
    sink: Any,
    model: TrafficModel,
    imperfections: Imperfections,
    *,
    events: int | None,
    start: datetime | None,
    span_s: float,
    rate: float | None,
    duration_s: float | None,
    progress: bool | None,
) -> tuple[dict[str, Any], float]:
    """Runs the model into the sink; returns the ledger columns and the seconds it took."""
    per_visit = model.expected_events_per_visit()
    limit: int | None = None
    end_ms: int | None = None
    if events is not None:
        if rate is not None or duration_s is not None:
            raise ValueError("give either --events or --rate/--duration, not both")
        start = start or datetime.fromtimestamp((time.time() // 60) * 60 - span_s, UTC)
        start_ms = int(start.timestamp() * 1000)
        visits_per_s = events / span_s / per_visit
        limit = events
        # Time slices of about 20,000 page views: big enough for numpy, small enough to stay
        # in cache and to start sending at once.
        chunk_ms = max(1000, int(20_000 / (events / span_s) * 1000))
        realtime = False
    else:
        if rate is None or duration_s is None or rate <= 0 or duration_s <= 0:
            raise ValueError("real-time mode needs a positive --rate and --duration")
        start_ms = int(time.time() * 1000)
        end_ms = start_ms + int(duration_s * 1000)
        visits_per_s = rate / per_visit
        chunk_ms = 1000
        realtime = True

    # A warm-up: visits in progress and returning visitors at the start, as on a real site.
    warmup_ms = 900_000
    chunks = model.view_chunks(start_ms, visits_per_s, warmup_ms, chunk_ms)
    stream = RecordStream(model, chunks, imperfections, realtime=realtime)
    bar = Progress(limit, progress)
    started = time.monotonic()
    coordinates = None
    # The run allocates millions of objects and no reference cycles: the cyclic garbage
    # collector would only rescan them (about a tenth of the time).
    collecting = gc.isenabled()
    if not realtime:
        gc.disable()
    try:
        try:
            sent = stream.run(_send_many(sink), limit=limit, end_ms=end_ms, tick=bar.update)
        finally:
            coordinates = sink.close()
        elapsed = time.monotonic() - started
        bar.close(len(sent))
        return _ledger_columns(model, sent, coordinates), elapsed
    finally:
        if collecting:
            gc.enable()


def worker_seed(seed: int, worker: int) -> int:
    """The seed of one worker of a parallel run (derived from the run's seed)."""
    return int(np.random.SeedSequence([seed, worker]).generate_state(1, np.uint64)[0])


def _simulate_parallel(
    sink: Sink,
    workers: int,
    *,
    seed: int,
    events: int,
    start: datetime,
    span_s: float,
    profile: TrafficProfile,
    imperfections: Imperfections,
    ledger_path: Path | None,
    rows: bool,
) -> tuple[SimulationSummary, list[dict[str, Any]]]:
    """``simulate(events=...)`` over several processes.

    Worker ``w`` of ``N`` runs its own traffic model (seed :func:`worker_seed`, visitor numbers
    ``w + 1, w + 1 + N, ...``) with its share of the events over the same span, so the workers'
    visitors are disjoint and together make the same traffic at the same rate. To Kafka, each
    worker produces directly and owns the partitions ``p`` with ``p % N == w`` (so its offsets
    follow from its own partitions' end offsets, and a key stays in one partition); to a
    file, each writes a part and the parts are joined in worker order. The ledgers are merged:
    ``seq`` orders by (``worker``, the worker's own send order), so within one Kafka partition
    ``seq`` follows the offsets. Deterministic for a given seed and worker count.
    """
    import multiprocessing
    import shutil
    import tempfile

    import pyarrow as pa

    if isinstance(sink, KafkaSink):
        workers = min(workers, sink.partitions)
    elif not isinstance(sink, FileSink):
        raise ValueError("--workers needs a Kafka or file sink")
    workers = max(1, min(workers, events))
    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="webtraffic-simulate-") as tmp:
        folder = Path(tmp)
        started = time.monotonic()
        processes = []
        for worker in range(workers):
            share = events // workers + (1 if worker < events % workers else 0)
            args = (sink, worker, workers, seed, share, start, span_s, profile, imperfections,
                    folder)  # fmt: skip
            process = context.Process(target=_worker_main, args=args, daemon=True)
            process.start()
            processes.append(process)
        for process in processes:
            process.join()
        errors = []
        for worker, process in enumerate(processes):
            report = folder / f"error-{worker}.txt"
            if report.exists():
                errors.append(report.read_text())
            elif process.exitcode:
                errors.append(f"worker {worker} exited with code {process.exitcode}")
        if isinstance(sink, FileSink):
            for worker in range(workers):
                part = folder / f"part-{worker}.jsonl"
                if part.exists():
                    with part.open("rb") as src:
                        shutil.copyfileobj(src, sink._file, 16 << 20)
        sink.close()
        if errors:
            raise WebtrafficError(f"a simulator worker failed: {errors[0].strip()}")
        elapsed = time.monotonic() - started
        tables = []
        offset = 0
        for worker in range(workers):
            with pa.memory_map(str(folder / f"ledger-{worker}.arrow")) as source:
                table = pa.ipc.open_file(source).read_all()
            n = table.num_rows
            seq = pa.array(np.arange(offset, offset + n, dtype=np.int64))
            dup = table.column("duplicate_of").to_numpy(zero_copy_only=False)
            dup_col = pa.array(
                np.nan_to_num(dup, nan=-1).astype(np.int64) + offset, mask=np.isnan(dup)
            )
            table = table.set_column(0, "seq", seq)
            table = table.set_column(table.schema.get_field_index("duplicate_of"),
                                     "duplicate_of", dup_col)  # fmt: skip
            table = table.set_column(table.schema.get_field_index("worker"), "worker",
                                     pa.array(np.full(n, worker, dtype=np.int64)))  # fmt: skip
            tables.append(table)
            offset += n
        merged = pa.concat_tables(tables).combine_chunks()
    columns = {
        name: pa.concat_arrays(merged.column(name).chunks)
        if merged.num_rows
        else merged.column(name)
        for name in LEDGER_COLUMNS
    }
    summary = SimulationSummary(seconds=elapsed, sink=f"{sink.name} ({workers} workers)")
    return summary, _finish(columns, summary, ledger_path, rows)


def _worker_main(
    sink: Sink,
    worker: int,
    workers: int,
    seed: int,
    events: int,
    start: datetime,
    span_s: float,
    profile: TrafficProfile,
    imperfections: Imperfections,
    folder: Path,
) -> None:
    """One worker of :func:`_simulate_parallel`, in a forked process.

    Runs its share, writes its ledger to ``folder/ledger-<w>.arrow`` (or the error to
    ``error-<w>.txt``) and exits at once: the parent's Kafka clients are not its to tear down.
    """
    code = 0
    try:
        import pyarrow as pa

        mine: Any
        if isinstance(sink, KafkaSink):
            owned = [p for p in range(sink.partitions) if p % workers == worker]
            mine = KafkaSink(sink.settings, sink.topic, owned=owned)
        else:
            mine = FileSink(folder / f"part-{worker}.jsonl")
        model = TrafficModel(worker_seed(seed, worker), profile, worker, workers)
        columns, _ = _produce(
            mine, model, imperfections, events=events, start=start, span_s=span_s, rate=None,
            duration_s=None, progress=False,
        )  # fmt: skip
        table = pa.table({name: columns[name] for name in LEDGER_COLUMNS})
        path = str(folder / f"ledger-{worker}.arrow")
        with pa.OSFile(path, "wb") as out, pa.ipc.new_file(out, table.schema) as writer:
            writer.write_table(table)
    except BaseException:  # reported to the parent, which raises
        import traceback

        (folder / f"error-{worker}.txt").write_text(traceback.format_exc())
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _send_many(sink: Any) -> Any:
    """The sink's ``send_many``, or one made of its ``send`` (any object with ``send`` will do)."""
    if hasattr(sink, "send_many"):
        return sink.send_many

    def send_many(keys: list[bytes], values: list[bytes], crcs: Any = None) -> None:
        del crcs
        for key, value in zip(keys, values, strict=True):
            sink.send(key, value)

    return send_many


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
            sink.send(key, value)
            sent.append((value, key))
            if seq % 1000 == 0:
                bar.update(seq)
    finally:
        coordinates = sink.close()
    elapsed = time.monotonic() - started
    bar.close(len(sent))
    rows = []
    seen: dict[str, int] = {}
    for seq, (value, key) in enumerate(sent):
        rows.append(
            _replay_row(
                seq, value, key, coordinates.partition[seq], coordinates.offset[seq],
                coordinates.timestamp_ms[seq], seen,
            )
        )  # fmt: skip
    summary = SimulationSummary(seconds=elapsed, sink=sink.name)
    columns = {name: [row[name] for row in rows] for name in LEDGER_COLUMNS}
    _summarise(columns, summary)
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
        "worker": 0,
    }
