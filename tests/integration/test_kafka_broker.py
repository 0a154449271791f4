"""The embedded broker is a real Kafka: messages go in and come back, the CLI reports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from tests.conftest import create_topic
from webtraffic.errors import WebtrafficError
from webtraffic.kafka_broker import LocalKafkaBroker
from webtraffic.settings import Settings

pytestmark = pytest.mark.integration

N_MESSAGES = 10_000


@pytest.fixture(scope="module")
def ten_thousand(kafka_broker: LocalKafkaBroker, settings: Settings) -> tuple[str, dict[str, str]]:
    """A topic holding 10,000 keyed JSON messages; returns the topic and key -> value."""
    topic = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    create_topic(settings, topic, partitions=3)
    producer = Producer({**settings.kafka.client_config(), "linger.ms": 20, "acks": "all"})
    sent: dict[str, str] = {}
    errors: list[object] = []
    for i in range(N_MESSAGES):
        key = f"visitor-{i:05d}"
        value = json.dumps({"seq": i, "url": f"https://example.com/p/{i % 97}"})
        sent[key] = value
        producer.produce(
            topic, key=key, value=value, on_delivery=lambda e, _m: e and errors.append(e)
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []
    return topic, sent


def consume_all(settings: Settings, topic: str, expected: int, timeout: float = 60.0) -> list:
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                assert message.error() is None, message.error()
                messages.append(message)
    finally:
        consumer.close()
    return messages


def test_produce_and_consume_ten_thousand(ten_thousand, settings):
    topic, sent = ten_thousand
    messages = consume_all(settings, topic, N_MESSAGES)
    received = {m.key().decode(): m.value().decode() for m in messages}
    assert len(messages) == N_MESSAGES
    assert received == sent
    assert {m.partition() for m in messages} == {0, 1, 2}


def test_spark_batch_reads_the_topic(ten_thousand, spark, settings):
    topic, sent = ten_thousand
    df = (
        spark.read.format("kafka")
        .options(**settings.kafka.spark_options())
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
    )
    rows = df.selectExpr("CAST(key AS STRING) AS k", "CAST(value AS STRING) AS v").collect()
    assert len(rows) == N_MESSAGES
    assert {r.k: r.v for r in rows} == sent


def test_start_twice_is_harmless(kafka_broker: LocalKafkaBroker):
    pid = kafka_broker.pid()
    status = kafka_broker.start()
    assert status.state == "running"
    assert status.pid == pid


def test_stack_status_cli_reports_broker(kafka_broker: LocalKafkaBroker, settings: Settings):
    out = subprocess.run(
        [sys.executable, "-m", "webtraffic.cli", "stack", "status", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    ).stdout
    status = json.loads(out)
    assert status["kafka"]["state"] == "running"
    assert status["kafka"]["pid"] == kafka_broker.pid()
    assert status["kafka"]["port"] == settings.kafka.port
    assert status["kafka"]["topics"][settings.kafka.topic] == settings.kafka.partitions


def test_port_in_use_gives_a_clear_error(
    kafka_broker: LocalKafkaBroker, settings: Settings, tmp_path
):
    # A second broker in another state folder, told to use the port the first one holds.
    other = Settings.from_env({**os.environ, "WEBTRAFFIC_STATE_DIR": str(tmp_path)})
    other = other.__class__(**{**other.__dict__, "jars_dir": settings.jars_dir})
    with pytest.raises(WebtrafficError, match=rf"port {settings.kafka.port} .* already in use"):
        LocalKafkaBroker(other).start()


def test_broker_that_fails_to_start_points_to_its_log(settings: Settings, tmp_path):
    from webtraffic.processes import free_port

    env = {
        **os.environ,
        "WEBTRAFFIC_STATE_DIR": str(tmp_path),
        "WEBTRAFFIC_KAFKA_PORT": str(free_port()),
        "WEBTRAFFIC_KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    broken = LocalKafkaBroker(Settings.from_env(env))
    # Storage formatted for another node: a real broker refuses to start on it.
    broken.data_dir.mkdir(parents=True)
    (broken.data_dir / "meta.properties").write_text(
        "version=1\nnode.id=7\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\ndirectory.id=AAAAAAAAAAAAAAAAAAAAAA\n"
    )
    with pytest.raises(WebtrafficError) as excinfo:
        broken.start(timeout=60)
    message = str(excinfo.value)
    assert str(broken.log_file) in message
    assert "\n" not in message
    assert broken.pid() is None
