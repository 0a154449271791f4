"""The local stack's background simulator: started detached with a pid file, stopped by pid."""

from __future__ import annotations

import pytest

from webtraffic import processes
from webtraffic.stack import SIMULATOR_MARKER, stack_status, start_simulator, stop_simulator

pytestmark = pytest.mark.integration


def _end_offsets(settings) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka.client_config(), "group.id": "stack-simulator-test"})
    try:
        meta = consumer.list_topics(settings.kafka.topic, timeout=10)
        partitions = meta.topics[settings.kafka.topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(settings.kafka.topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


def test_simulator_starts_once_sends_and_stops(kafka_broker, settings):
    before = _end_offsets(settings)
    pid = start_simulator(settings, rate=50)
    try:
        assert start_simulator(settings, rate=50) == pid  # running: not started twice
        assert processes.pid_alive(pid, SIMULATOR_MARKER)
        assert stack_status(settings)["simulator"]["state"] == "running"
        assert processes.wait_until(lambda: _end_offsets(settings) > before + 20, timeout=60)
    finally:
        assert stop_simulator(settings)
    assert not processes.pid_alive(pid, SIMULATOR_MARKER)
    assert stack_status(settings)["simulator"]["state"] == "stopped"
    assert not stop_simulator(settings)
