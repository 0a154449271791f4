"""Spark and pyiceberg share one Iceberg JDBC catalog; streaming honours its checkpoint."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from confluent_kafka import Producer

from webtraffic.settings import Settings

pytestmark = pytest.mark.integration


def test_spark_and_pyiceberg_see_each_others_commits(spark, catalog):
    spark.sql("CREATE NAMESPACE IF NOT EXISTS it_shared")
    spark.sql("DROP TABLE IF EXISTS it_shared.roundtrip")
    spark.sql("CREATE TABLE it_shared.roundtrip (id BIGINT, name STRING) USING iceberg")
    spark.sql("INSERT INTO it_shared.roundtrip VALUES (1, 'spark-a'), (2, 'spark-b')")

    table = catalog.load_table("it_shared.roundtrip")
    seen_by_pyiceberg = table.scan().to_arrow().sort_by("id").to_pylist()
    assert seen_by_pyiceberg == [{"id": 1, "name": "spark-a"}, {"id": 2, "name": "spark-b"}]

    table.append(pa.table({"id": pa.array([3], pa.int64()), "name": ["pyiceberg-c"]}))
    rows = spark.sql("SELECT id, name FROM it_shared.roundtrip ORDER BY id").collect()
    assert [(r.id, r.name) for r in rows] == [(1, "spark-a"), (2, "spark-b"), (3, "pyiceberg-c")]


def _produce(settings: Settings, topic: str, start: int, count: int) -> None:
    producer = Producer({**settings.kafka.client_config(), "linger.ms": 5})
    for i in range(start, start + count):
        producer.produce(topic, key=str(i), value=json.dumps({"seq": i}))
    assert producer.flush(30) == 0


def _copy_topic_available_now(spark, settings: Settings, topic: str, table: str, checkpoint: str):
    stream = (
        spark.readStream.format("kafka")
        .options(**settings.kafka.spark_options())
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .selectExpr("CAST(value AS STRING) AS value", "partition", "offset")
    )
    query = (
        stream.writeStream.format("iceberg")
        .outputMode("append")
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .toTable(table)
    )
    query.awaitTermination(300)
    assert query.exception() is None


def test_available_now_stream_resumes_from_checkpoint(spark, settings, new_topic, tmp_path):
    table = "it_shared.stream_copy"
    spark.sql("CREATE NAMESPACE IF NOT EXISTS it_shared")
    spark.sql("DROP TABLE IF EXISTS it_shared.stream_copy")
    spark.sql(f"CREATE TABLE {table} (value STRING, partition INT, offset BIGINT) USING iceberg")
    checkpoint = str(tmp_path / "checkpoint")

    _produce(settings, new_topic, 0, 300)
    _copy_topic_available_now(spark, settings, new_topic, table, checkpoint)
    first = spark.table(table).collect()
    assert sorted(json.loads(r.value)["seq"] for r in first) == list(range(300))

    _produce(settings, new_topic, 300, 120)
    _copy_topic_available_now(spark, settings, new_topic, table, checkpoint)
    rows = spark.table(table).collect()
    # Exactly the new ones were added: no message lost, none copied twice.
    assert sorted(json.loads(r.value)["seq"] for r in rows) == list(range(420))
    assert len({(r.partition, r.offset) for r in rows}) == 420
