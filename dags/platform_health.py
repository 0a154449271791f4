"""
### Platform health

Checks, every 15 minutes, that the pipeline's foundations answer:

* **kafka_topic** — the configured Kafka cluster answers and has the events topic
  (`web.events` by default); the task returns its partition count.
* **iceberg_catalog** — the Iceberg catalog opens and lists its tables (local profile: the JDBC
  catalog on SQLite, read with pyiceberg).

A red run means the streaming apps cannot work either: start the stack with `make run` or
`webtraffic stack up`, and read the task log for the one-line reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task


@task
def kafka_topic() -> int:
    from webtraffic.health import kafka_topic_partitions
    from webtraffic.settings import Settings

    return kafka_topic_partitions(Settings.from_env())


@task
def iceberg_catalog() -> int:
    from webtraffic.health import catalog_table_count
    from webtraffic.settings import Settings

    return catalog_table_count(Settings.from_env())


@dag(
    dag_id="platform_health",
    schedule=timedelta(minutes=15),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["webtraffic", "platform"],
    default_args={"owner": "data-platform", "retries": 1, "retry_delay": timedelta(minutes=1)},
)
def platform_health() -> None:
    kafka_topic()
    iceberg_catalog()


platform_health()
