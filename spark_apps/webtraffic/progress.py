"""``ops.stream_progress``: one row per micro-batch per streaming query.

A ``StreamingQueryListener`` turns each progress event into a row and a one-line log message;
a background thread appends the rows to the table every few seconds (never from the listener
callback itself, which must return quickly), and :meth:`ProgressRecorder.close` flushes the rest.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql.streaming import StreamingQueryListener
from pyspark.sql.types import (
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from webtraffic.tables import OPS_STREAM_PROGRESS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

PROGRESS_SCHEMA = StructType(
    [
        StructField("query_name", StringType()),
        StructField("query_id", StringType()),
        StructField("run_id", StringType()),
        StructField("batch_id", LongType()),
        StructField("ts", TimestampType()),
        StructField("num_input_rows", LongType()),
        StructField("input_rows_per_second", DoubleType()),
        StructField("processed_rows_per_second", DoubleType()),
        StructField("batch_duration_ms", LongType()),
        StructField("duration_ms", MapType(StringType(), LongType())),
        StructField("source", StringType()),
        StructField("end_offsets", StringType()),
        StructField("latest_offsets", StringType()),
        StructField("lag_records", LongType()),
        StructField("watermark", TimestampType()),
        StructField("state_rows", LongType()),
        StructField("state_memory_bytes", LongType()),
        StructField("rows_dropped_by_watermark", LongType()),
        StructField("sink", StringType()),
        StructField("recorded_ts", TimestampType()),
    ]
)


def _parse_ts(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def kafka_lag(end_offsets: str | None, latest_offsets: str | None) -> int | None:
    """Records between the offsets a batch reached and the end of the topic (Kafka sources)."""
    if not end_offsets or not latest_offsets:
        return None
    try:
        end, latest = json.loads(end_offsets), json.loads(latest_offsets)
    except ValueError:
        return None
    if not isinstance(end, dict) or not isinstance(latest, dict):
        return None
    lag = 0
    for topic, partitions in latest.items():
        if not isinstance(partitions, dict):
            return None  # not Kafka-shaped offsets (an Iceberg source, for example)
        reached = end.get(topic, {})
        for partition, offset in partitions.items():
            lag += max(0, int(offset) - int(reached.get(partition, 0)))
    return lag


def progress_row(progress: Any) -> dict[str, Any]:
    """Maps a ``StreamingQueryProgress`` to a row of ``ops.stream_progress``."""
    sources = list(progress.sources or [])
    source = sources[0] if sources else None
    end_offsets = source.endOffset if source else None
    latest_offsets = source.latestOffset if source else None
    operators = list(progress.stateOperators or [])
    event_time = progress.eventTime or {}
    return {
        "query_name": progress.name,
        "query_id": str(progress.id),
        "run_id": str(progress.runId),
        "batch_id": int(progress.batchId),
        "ts": _parse_ts(progress.timestamp),
        "num_input_rows": int(progress.numInputRows or 0),
        "input_rows_per_second": float(progress.inputRowsPerSecond or 0.0),
        "processed_rows_per_second": float(progress.processedRowsPerSecond or 0.0),
        "batch_duration_ms": int(progress.batchDuration or 0),
        "duration_ms": {k: int(v) for k, v in (progress.durationMs or {}).items()},
        "source": source.description if source else None,
        "end_offsets": end_offsets if isinstance(end_offsets, str) else json.dumps(end_offsets),
        "latest_offsets": (
            latest_offsets
            if isinstance(latest_offsets, str) or latest_offsets is None
            else json.dumps(latest_offsets)
        ),
        "lag_records": kafka_lag(
            end_offsets if isinstance(end_offsets, str) else json.dumps(end_offsets),
            latest_offsets if isinstance(latest_offsets, str) else None,
        ),
        "watermark": _parse_ts(event_time.get("watermark")),
        "state_rows": sum(int(op.numRowsTotal or 0) for op in operators) if operators else None,
        "state_memory_bytes": (
            sum(int(op.memoryUsedBytes or 0) for op in operators) if operators else None
        ),
        "rows_dropped_by_watermark": sum(
            int(op.numRowsDroppedByWatermark or 0) for op in operators
        ),
        "sink": progress.sink.description if progress.sink else None,
        "recorded_ts": datetime.now(UTC).replace(tzinfo=None),
    }


class ProgressRecorder(StreamingQueryListener):
    """Records every micro-batch of every query of this Spark application.

    Args:
        spark: The application's session.
        flush_interval_s: How often the background thread appends buffered rows.
        table: Target table.
    """

    def __init__(
        self,
        spark: SparkSession,
        flush_interval_s: float = 10.0,
        table: str = OPS_STREAM_PROGRESS.name,
    ) -> None:
        self.spark = spark
        self.table = table
        self.flush_interval_s = flush_interval_s
        self._rows: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._terminated: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="progress-flusher", daemon=True)
        self.recorded = 0

    def start(self) -> ProgressRecorder:
        """Registers the listener and starts the flusher thread."""
        self.spark.streams.addListener(self)
        self._thread.start()
        return self

    # StreamingQueryListener callbacks: keep them cheap.

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 (Spark's name)
        """Logs the start of a query."""
        log.info("query %s started (id %s, run %s)", event.name, event.id, event.runId)

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        """Buffers the batch's row and logs one line."""
        try:
            row = progress_row(event.progress)
        except Exception:  # a metrics problem must never hurt the stream
            log.exception("could not read a progress event")
            return
        self._rows.put(row)
        lag = row["lag_records"]
        log.info(
            "%s batch %s: %s rows in %.1f s (%.0f rows/s)%s%s",
            row["query_name"],
            row["batch_id"],
            f"{row['num_input_rows']:,}",
            row["batch_duration_ms"] / 1000,
            row["processed_rows_per_second"],
            f", lag {lag:,} records" if lag is not None else "",
            f", {row['rows_dropped_by_watermark']:,} rows too late"
            if row["rows_dropped_by_watermark"]
            else "",
        )

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        """Nothing to record for an idle trigger."""

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        """Remembers the end of a query (and logs its failure)."""
        self._terminated.add(str(event.id))
        if event.exception:
            log.error("query %s failed: %s", event.id, event.exception.splitlines()[0])

    # Flushing.

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            self.flush()

    def flush(self) -> int:
        """Appends the buffered rows to the table.

        Returns:
            The number of rows written.
        """
        with self._lock:
            rows: list[dict[str, Any]] = []
            while True:
                try:
                    rows.append(self._rows.get_nowait())
                except queue.Empty:
                    break
            if not rows:
                return 0
            try:
                frame = self.spark.createDataFrame(
                    [tuple(r[f.name] for f in PROGRESS_SCHEMA.fields) for r in rows],
                    PROGRESS_SCHEMA,
                )
                frame.writeTo(self.table).append()
            except Exception:
                log.exception(
                    "could not record %d progress rows; kept for the next flush", len(rows)
                )
                for row in rows:
                    self._rows.put(row)
                return 0
            self.recorded += len(rows)
            return len(rows)

    def close(self, query_ids: list[str] | None = None, timeout_s: float = 10.0) -> None:
        """Waits for the termination events of ``query_ids``, stops the thread, flushes."""
        if query_ids:
            deadline = threading.Event()
            waited = 0.0
            while not set(query_ids) <= self._terminated and waited < timeout_s:
                deadline.wait(0.1)
                waited += 0.1
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)
        self.flush()
        self.spark.streams.removeListener(self)
