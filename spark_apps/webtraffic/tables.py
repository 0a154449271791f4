"""Every Iceberg table of the pipeline: name, columns, partitioning, created idempotently.

The table names are unqualified (``namespace.table``) and resolve in the session's current
catalog: the Iceberg JDBC catalog locally, the configured Unity catalog on Databricks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class TableSpec:
    """DDL of one table."""

    name: str
    columns: str
    partitioned_by: str
    comment: str

    @property
    def namespace(self) -> str:
        """The namespace (schema) part of the name."""
        return self.name.split(".")[0]

    def ddl(self) -> str:
        """``CREATE TABLE IF NOT EXISTS`` for this table."""
        return (
            f"CREATE TABLE IF NOT EXISTS {self.name} ({self.columns}) USING iceberg "
            f"PARTITIONED BY ({self.partitioned_by}) COMMENT '{self.comment}' "
            "TBLPROPERTIES ('format-version'='2', 'write.distribution-mode'='none', "
            "'write.spark.fanout.enabled'='true', 'write.metadata.delete-after-commit.enabled'="
            "'true', 'write.metadata.previous-versions-max'='50')"
        )


BRONZE_EVENTS_RAW = TableSpec(
    name="bronze.events_raw",
    columns="""
        value STRING COMMENT 'the Kafka value decoded as UTF-8; null when it is not valid UTF-8',
        value_raw BINARY COMMENT 'the raw bytes, kept only when the value is not valid UTF-8',
        is_valid_utf8 BOOLEAN,
        key STRING COMMENT 'Kafka key (visitor key)',
        kafka_topic STRING,
        kafka_partition INT,
        kafka_offset BIGINT,
        kafka_ts TIMESTAMP COMMENT 'Kafka record timestamp',
        ingest_ts TIMESTAMP COMMENT 'when the bronze stream read it'
    """,
    partitioned_by="days(kafka_ts)",
    comment="Every Kafka record exactly once: the durable replay log",
)

SILVER_EVENTS = TableSpec(
    name="silver.events",
    columns="""
        event_id STRING COMMENT 'event_id of the payload, else SHA-256 of the raw value',
        event_type STRING,
        event_time TIMESTAMP COMMENT 'client event time, UTC',
        visitor_key STRING COMMENT 'u:<user_id> | a:<anonymous_id> | h:<sha256(ip|ua)>',
        is_logged_in BOOLEAN,
        user_id BIGINT,
        anonymous_id STRING,
        academy_id BIGINT,
        host STRING,
        url STRING,
        url_scheme STRING,
        url_host STRING,
        url_path STRING,
        url_query STRING,
        utm_source STRING,
        utm_medium STRING,
        utm_campaign STRING,
        utm_term STRING,
        utm_content STRING,
        referrer STRING,
        referrer_host STRING,
        ip STRING,
        ua_family STRING,
        ua_major STRING,
        ua_minor STRING,
        ua_patch STRING,
        device_family STRING,
        os_family STRING,
        os_major STRING,
        os_minor STRING,
        accept_language STRING,
        headers MAP<STRING, STRING>,
        kafka_topic STRING,
        kafka_partition INT,
        kafka_offset BIGINT,
        kafka_ts TIMESTAMP,
        ingest_ts TIMESTAMP,
        silver_ts TIMESTAMP
    """,
    partitioned_by="days(event_time)",
    comment="Valid, normalised, deduplicated events",
)

SILVER_QUARANTINE = TableSpec(
    name="silver.events_quarantine",
    columns="""
        reason STRING COMMENT 'the first failed rule (precedence order of the contract)',
        reasons ARRAY<STRING> COMMENT 'every failed rule',
        value STRING,
        value_raw BINARY,
        key STRING,
        kafka_topic STRING,
        kafka_partition INT,
        kafka_offset BIGINT,
        kafka_ts TIMESTAMP,
        ingest_ts TIMESTAMP,
        quarantined_ts TIMESTAMP
    """,
    partitioned_by="days(kafka_ts)",
    comment="Every rejected record with its reason and Kafka coordinates",
)

GOLD_EVENTS_ENRICHED = TableSpec(
    name="gold.events_enriched",
    columns="""
        event_id STRING,
        event_type STRING,
        event_time TIMESTAMP COMMENT 'client event time, UTC',
        visitor_key STRING,
        is_logged_in BOOLEAN,
        user_id BIGINT,
        anonymous_id STRING,
        academy_id BIGINT,
        host STRING,
        url STRING,
        page_path STRING COMMENT 'URL path, / when empty',
        url_query STRING,
        utm_source STRING,
        utm_medium STRING,
        utm_campaign STRING,
        utm_term STRING,
        utm_content STRING,
        referrer STRING,
        referrer_host STRING,
        referrer_class STRING COMMENT 'search | social | internal | direct | other',
        ip_anonymised STRING COMMENT 'IPv4 with the last octet zeroed, IPv6 /48 network',
        ip_version INT,
        ua_family STRING,
        ua_major STRING,
        device_family STRING,
        os_family STRING,
        os_major STRING,
        device_class STRING COMMENT 'desktop | mobile | tablet | bot',
        is_bot BOOLEAN COMMENT 'crawler or bot (user-agent family, known patterns)',
        accept_language STRING,
        country_code STRING,
        country_name STRING,
        region STRING,
        city STRING,
        latitude DOUBLE,
        longitude DOUBLE,
        geo_source STRING,
        geo_status STRING COMMENT 'resolved | non-routable | pending | invalid',
        geo_data_version STRING,
        kafka_topic STRING,
        kafka_partition INT,
        kafka_offset BIGINT,
        kafka_ts TIMESTAMP,
        ingest_ts TIMESTAMP,
        silver_ts TIMESTAMP,
        gold_ts TIMESTAMP COMMENT 'when the gold stream wrote it'
    """,
    partitioned_by="days(event_time)",
    comment="Silver events with geo, bot flag, device and referrer class; anonymised IP only",
)

GOLD_TRAFFIC_MINUTE = TableSpec(
    name="gold.traffic_minute",
    columns="""
        window_start TIMESTAMP COMMENT '1-minute tumbling window on event time',
        window_end TIMESTAMP,
        host STRING,
        country_code STRING,
        region STRING,
        city STRING,
        device_class STRING,
        events BIGINT,
        page_views BIGINT,
        unique_visitors BIGINT COMMENT 'exact, per row (not additive across rows)',
        bot_events BIGINT,
        logged_in_events BIGINT,
        first_kafka_ts TIMESTAMP,
        last_kafka_ts TIMESTAMP,
        computed_ts TIMESTAMP COMMENT 'when the watermark closed the window'
    """,
    partitioned_by="days(window_start)",
    comment="Events per minute x host x country x region x city x device class (30 s watermark)",
)

GOLD_SESSIONS = TableSpec(
    name="gold.sessions",
    columns="""
        session_id STRING COMMENT 'sha256(visitor_key|start micros), 32 hex digits',
        visitor_key STRING,
        is_logged_in BOOLEAN,
        session_start TIMESTAMP COMMENT 'first event',
        session_end TIMESTAMP COMMENT 'last event + 5 min gap (Spark session window end)',
        first_event_time TIMESTAMP,
        last_event_time TIMESTAMP,
        duration_s DOUBLE COMMENT 'last event - first event, seconds',
        events BIGINT,
        page_views BIGINT,
        distinct_pages BIGINT,
        entry_page STRING,
        exit_page STRING,
        is_bounce BOOLEAN COMMENT 'exactly one page view',
        host STRING,
        referrer_class STRING COMMENT 'of the first event',
        referrer_host STRING,
        country_code STRING,
        region STRING,
        city STRING,
        device_class STRING,
        is_bot BOOLEAN,
        computed_ts TIMESTAMP COMMENT 'when the watermark closed the session'
    """,
    partitioned_by="days(session_start)",
    comment="Visitor sessions, 5-minute inactivity gap (30 s watermark)",
)

OPS_STREAM_PROGRESS = TableSpec(
    name="ops.stream_progress",
    columns="""
        query_name STRING,
        query_id STRING,
        run_id STRING,
        batch_id BIGINT,
        ts TIMESTAMP COMMENT 'trigger time of the micro-batch',
        num_input_rows BIGINT,
        input_rows_per_second DOUBLE,
        processed_rows_per_second DOUBLE,
        batch_duration_ms BIGINT,
        duration_ms MAP<STRING, BIGINT> COMMENT 'addBatch, queryPlanning, walCommit, ...',
        source STRING,
        end_offsets STRING COMMENT 'offsets reached (JSON), Kafka: topic -> partition -> offset',
        latest_offsets STRING COMMENT 'end of the source when the batch ran (JSON)',
        lag_records BIGINT COMMENT 'records behind the end of the source, where known',
        watermark TIMESTAMP,
        state_rows BIGINT,
        state_memory_bytes BIGINT,
        rows_dropped_by_watermark BIGINT,
        sink STRING,
        recorded_ts TIMESTAMP
    """,
    partitioned_by="days(ts)",
    comment="One row per micro-batch per streaming query",
)

PIPELINE_TABLES: tuple[TableSpec, ...] = (
    BRONZE_EVENTS_RAW,
    SILVER_EVENTS,
    SILVER_QUARANTINE,
    GOLD_EVENTS_ENRICHED,
    GOLD_TRAFFIC_MINUTE,
    GOLD_SESSIONS,
    OPS_STREAM_PROGRESS,
)


def ensure_tables(spark: SparkSession, specs: tuple[TableSpec, ...] = PIPELINE_TABLES) -> None:
    """Creates the namespaces and tables that do not exist yet (safe to call at every start)."""
    for namespace in sorted({spec.namespace for spec in specs}):
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {namespace}")
    for spec in specs:
        spark.sql(spec.ddl())
