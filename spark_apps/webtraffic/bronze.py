"""Bronze: every Kafka record, decoded but otherwise untouched (``bronze.events_raw``).

Pure transform, indifferent to streaming or batch input: the streaming app and the backfill
both call :func:`bronze_from_kafka` on what the Kafka source gives them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

BRONZE_COLUMNS: tuple[str, ...] = (
    "value",
    "value_raw",
    "is_valid_utf8",
    "key",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_ts",
    "ingest_ts",
)


def bronze_from_kafka(kafka: DataFrame) -> DataFrame:
    """Maps Kafka source rows to bronze rows.

    The value becomes UTF-8 text; a value that is not valid UTF-8 keeps its raw bytes in
    ``value_raw`` and is flagged, so nothing is lost and silver can quarantine it with its reason.

    Args:
        kafka: Rows of Spark's Kafka source (``key, value, topic, partition, offset, timestamp``).

    Returns:
        Rows with the columns of ``bronze.events_raw``.
    """
    text = F.expr("try_validate_utf8(CAST(value AS STRING))")
    valid = text.isNotNull() | F.col("value").isNull()
    return kafka.select(
        text.alias("value"),
        F.when(~valid, F.col("value")).alias("value_raw"),
        valid.alias("is_valid_utf8"),
        F.expr("try_validate_utf8(CAST(key AS STRING))").alias("key"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_ts"),
        # In a stream this is the micro-batch's timestamp, which a replayed batch keeps.
        F.current_timestamp().alias("ingest_ts"),
    )
