"""Reads and writes of the pipeline, in one place; everything else is pure transforms.

Sources: Kafka (streaming or a batch offset range) and Iceberg tables (streaming or batch).
Sink: :func:`write`, which branches on ``df.isStreaming``. Streaming writes go through
``foreachBatch`` with an idempotent append — the one write path that works both on open-source
Iceberg and on Databricks-managed Iceberg tables (which have no ``writeStream`` sink).

Exactly-once: Spark replays a micro-batch after a crash between the table commit and the
checkpoint commit. Each append records in its snapshot summary the writer and a fingerprint of
the batch (per Kafka partition: first offset, last offset, row count; the rows of every event
table carry their Kafka coordinates, aggregated rows are identified by their key columns).
Before appending, the writer looks for that fingerprint among the table's recent snapshots and
skips a batch that is already committed. A replayed batch has
the same rows (same source offsets, same state version), hence the same fingerprint.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from webtraffic.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)

WRITER_PROPERTY = "webtraffic.writer"
BATCH_PROPERTY = "webtraffic.batch-id"
FINGERPRINT_PROPERTY = "webtraffic.fingerprint"
RECENT_SNAPSHOTS = 100
"""How many of a table's latest snapshots are searched for an already-committed batch."""


# --- sources ---------------------------------------------------------------------------------


def read_kafka_stream(
    spark: SparkSession, settings: Settings, max_offsets_per_trigger: int
) -> DataFrame:
    """The events topic as a stream, from the earliest offset on a first run.

    ``failOnDataLoss=false``: if retention deleted records the stream has not read yet (it was
    down longer than the topic keeps data), the stream continues from what exists instead of
    stopping forever; the gap is visible as a jump in ``ops.stream_progress`` offsets and is
    repaired from upstream or accepted. Bronze, not Kafka, is the durable log.
    """
    return (
        spark.readStream.format("kafka")
        .options(**settings.kafka.spark_options())
        .option("subscribe", settings.kafka.topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
        .option("failOnDataLoss", "false")
        .option("includeHeaders", "false")
        .load()
    )


def read_kafka_range(
    spark: SparkSession, settings: Settings, starting: str, ending: str
) -> DataFrame:
    """A batch read of the events topic between two offset specs (JSON or earliest/latest)."""
    return (
        spark.read.format("kafka")
        .options(**settings.kafka.spark_options())
        .option("subscribe", settings.kafka.topic)
        .option("startingOffsets", starting)
        .option("endingOffsets", ending)
        .option("failOnDataLoss", "false")
        .load()
    )


def qualified(spark: SparkSession, table: str) -> str:
    """``catalog.namespace.table`` for a ``namespace.table`` in the session's current catalog.

    Iceberg's path-style APIs (``load(name)``, metadata tables) otherwise try the first part as
    a catalog name first.
    """
    return table if table.count(".") >= 2 else f"{spark.catalog.currentCatalog()}.{table}"


def read_table_stream(spark: SparkSession, table: str, max_rows_per_trigger: int) -> DataFrame:
    """An Iceberg table as a stream of its appends (compaction snapshots are skipped)."""
    return (
        spark.readStream.format("iceberg")
        .option("streaming-max-rows-per-micro-batch", str(max_rows_per_trigger))
        .option("streaming-skip-overwrite-snapshots", "true")
        .option("streaming-skip-delete-snapshots", "true")
        .load(qualified(spark, table))
    )


def read_table(spark: SparkSession, table: str) -> DataFrame:
    """An Iceberg table as a batch DataFrame."""
    return spark.table(table)


# --- sink ------------------------------------------------------------------------------------


KAFKA_COORDINATES = ("kafka_topic", "kafka_partition", "kafka_offset")


def batch_fingerprint(batch: DataFrame, key_columns: Sequence[str] = ()) -> str | None:
    """Identity of a batch; None for an empty batch.

    Rows with Kafka coordinates: per topic and partition, first offset, last offset and count.
    Aggregated rows (windows, sessions) have none: they are identified by ``key_columns``
    (window start and dimensions, session id), which a stateful query in append mode emits
    once; the fingerprint is the row count and two order-independent sums of row-key hashes.
    """
    if all(c in batch.columns for c in KAFKA_COORDINATES):
        rows = (
            batch.groupBy("kafka_topic", "kafka_partition")
            .agg(F.min("kafka_offset"), F.max("kafka_offset"), F.count(F.lit(1)))
            .collect()
        )
        if not rows:
            return None
        material = ";".join(
            f"{t}/{p}:{lo}-{hi}#{n}" for t, p, lo, hi, n in sorted(tuple(r) for r in rows)
        )
        return hashlib.sha256(material.encode()).hexdigest()
    if not key_columns:
        raise ValueError("a batch without Kafka coordinates needs key_columns to be fingerprinted")
    keys = [F.col(c) for c in key_columns]
    row = batch.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.xxhash64(*keys).cast("decimal(38,0)")).alias("h1"),
        F.sum(F.hash(*keys).cast("decimal(38,0)")).alias("h2"),
        F.bit_xor(F.xxhash64(*keys, F.lit("webtraffic"))).alias("h3"),
    ).first()
    if row is None or row.n == 0:
        return None
    material = f"keys {','.join(key_columns)}#{row.n}:{row.h1}:{row.h2}:{row.h3}"
    return hashlib.sha256(material.encode()).hexdigest()


def committed_fingerprints(spark: SparkSession, table: str, writer: str) -> set[str]:
    """Fingerprints of the batches ``writer`` committed among the table's recent snapshots."""
    rows = spark.sql(
        f"SELECT summary['{FINGERPRINT_PROPERTY}'] AS fp FROM {qualified(spark, table)}.snapshots "
        f"WHERE summary['{WRITER_PROPERTY}'] = '{writer}' "
        f"ORDER BY committed_at DESC LIMIT {RECENT_SNAPSHOTS}"
    ).collect()
    return {r.fp for r in rows if r.fp}


def idempotent_append(
    batch: DataFrame, table: str, writer: str, batch_id: int, key_columns: Sequence[str] = ()
) -> bool:
    """Appends ``batch`` to ``table`` unless this writer already committed the same batch.

    ``key_columns`` identify rows without Kafka coordinates (see :func:`batch_fingerprint`).

    Returns:
        True if rows were appended, False if the batch was empty or already committed.
    """
    spark = batch.sparkSession
    owned = not batch.is_cached
    if owned:
        batch = batch.persist()
    try:
        fingerprint = batch_fingerprint(batch, key_columns)
        if fingerprint is None:
            return False
        if fingerprint in committed_fingerprints(spark, table, writer):
            log.warning("%s: batch %s already committed to %s, skipped", writer, batch_id, table)
            return False
        (
            batch.writeTo(table)
            .option(f"snapshot-property.{WRITER_PROPERTY}", writer)
            .option(f"snapshot-property.{BATCH_PROPERTY}", str(batch_id))
            .option(f"snapshot-property.{FINGERPRINT_PROPERTY}", fingerprint)
            .append()
        )
        return True
    finally:
        if owned:
            batch.unpersist()


Transform = Callable[["DataFrame"], "DataFrame"]
"""Turns the rows a query produces into the rows of one target table."""


def write(
    df: DataFrame,
    targets: str | Mapping[str, Transform],
    *,
    query_name: str,
    checkpoint: str | None = None,
    trigger: dict[str, object] | None = None,
    before_write: Callable[[DataFrame, int], DataFrame] | None = None,
    key_columns: Sequence[str] = (),
) -> StreamingQuery | None:
    """Writes ``df`` to its target tables: a streaming query for a stream, appends for a batch.

    Args:
        df: The rows to write.
        targets: A table name (rows already in its columns), or table name -> transform that
            selects that table's rows from ``df`` (one query feeding several tables, e.g. silver
            events and quarantine from one validation). The batch is computed once and cached
            while the tables are appended in order.
        query_name: Name of the streaming query; also the writer id in snapshot summaries.
        checkpoint: Checkpoint folder of the query (streaming only).
        trigger: ``DataStreamWriter.trigger`` arguments, e.g. ``{"availableNow": True}``.
        before_write: Per-micro-batch step run on the driver before the append (for example
            the geo lookup of a batch's new IPs); receives and returns the batch.
        key_columns: Row key of rows without Kafka coordinates (aggregates), for the batch
            fingerprint.

    Returns:
        The started query for a stream, None for a batch.
    """
    outputs: dict[str, Transform | None] = (
        {targets: None} if isinstance(targets, str) else dict(targets)
    )

    def append_batch(batch: DataFrame, batch_id: int) -> None:
        # Cached once: a geo step, several targets and each append's fingerprint would
        # otherwise each recompute the batch from its source.
        owned = not batch.is_cached
        if owned:
            batch = batch.persist()
        try:
            frame = before_write(batch, batch_id) if before_write else batch
            for table, transform in outputs.items():
                rows = transform(frame) if transform else frame
                idempotent_append(rows, table, query_name, batch_id, key_columns)
        finally:
            if owned:
                batch.unpersist()

    if not df.isStreaming:
        append_batch(df, -1)
        return None
    if checkpoint is None:
        raise ValueError("a streaming write needs a checkpoint")
    writer = (
        df.writeStream.queryName(query_name)
        .option("checkpointLocation", checkpoint)
        .foreachBatch(append_batch)
    )
    if trigger:
        writer = writer.trigger(**trigger)  # type: ignore[arg-type]
    return writer.start()
