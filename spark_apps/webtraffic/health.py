"""Cheap checks that the pipeline's services answer, for the platform_health DAG and the CLI."""

from __future__ import annotations

from webtraffic.errors import WebtrafficError
from webtraffic.settings import Settings


def kafka_topic_partitions(settings: Settings, timeout: float = 10.0) -> int:
    """Returns the partition count of the events topic, asking the configured Kafka.

    Raises:
        WebtrafficError: Kafka does not answer or the topic does not exist.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    kafka = settings.kafka
    admin = AdminClient(kafka.client_config())
    try:
        metadata = admin.list_topics(topic=kafka.topic, timeout=timeout)
    except KafkaException as exc:
        raise WebtrafficError(f"Kafka at {kafka.bootstrap_servers} did not answer: {exc}") from exc
    topic = metadata.topics.get(kafka.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        reason = topic.error if topic is not None and topic.error is not None else "missing"
        raise WebtrafficError(f"topic {kafka.topic} on {kafka.bootstrap_servers}: {reason}")
    return len(topic.partitions)


def catalog_table_count(settings: Settings) -> int:
    """Returns how many tables the Iceberg catalog lists (it opens and answers)."""
    from webtraffic.catalog import load_catalog, table_summaries

    return len(table_summaries(load_catalog(settings)))
