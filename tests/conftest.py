"""Session fixtures on the real components: one Kafka broker and one SparkSession per run.

The tests get a stack of their own: state under ``<state>/test/run-<pid>`` (removed by a later
run once this one has ended) and a broker on free ports, so a running ``make run`` stack is never
touched. The environment is set before anything imports Airflow or reads settings, so
``Settings.from_env()`` — in the tests, in CLI subprocesses and in DAG tasks alike — describes
this test stack.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from webtraffic.processes import pid_alive
from webtraffic.settings import PROJECT_ROOT, Settings, use_isolated_stack


def _configure_test_environment() -> Settings:
    base = Settings.from_env()
    # One folder per pytest process, so concurrent runs never share a broker's data; folders
    # of runs that have ended are removed.
    runs = base.state_dir / "test"
    runs.mkdir(parents=True, exist_ok=True)
    for old in runs.glob("run-*"):
        if not pid_alive(int(old.name.removeprefix("run-"))):
            shutil.rmtree(old, ignore_errors=True)
    settings = use_isolated_stack(
        runs / f"run-{os.getpid()}",
        WEBTRAFFIC_SPARK_MASTER="local[2]",
        WEBTRAFFIC_SPARK_SHUFFLE_PARTITIONS="2",
        WEBTRAFFIC_SPARK_DRIVER_MEMORY="2g",
    )
    from webtraffic.airflow_env import apply_airflow_environment

    apply_airflow_environment(settings)
    return settings


TEST_SETTINGS = _configure_test_environment()
# py4j logs from __del__ at interpreter exit, after pytest closed its capture streams.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings of the test stack."""
    return TEST_SETTINGS


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def kafka_broker(settings: Settings) -> Iterator[object]:
    """The real single-node KRaft broker, started once per test session."""
    from webtraffic.kafka_broker import LocalKafkaBroker

    broker = LocalKafkaBroker(settings)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def new_topic(kafka_broker: object, settings: Settings) -> Iterator[str]:
    """A fresh 3-partition topic for one test, so tests never see each other's messages."""
    name = f"test.{uuid.uuid4().hex[:12]}"
    create_topic(settings, name, partitions=3)
    return name


def create_topic(settings: Settings, name: str, partitions: int = 3) -> None:
    """Creates a topic on the test broker and waits for it."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.kafka.client_config())
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)


@pytest.fixture(scope="session")
def spark(settings: Settings) -> Iterator[object]:
    """The one SparkSession of the run, with the Kafka source and the Iceberg JDBC catalog."""
    from webtraffic.spark_session import build_spark_session

    session = build_spark_session(
        settings, app_name="webtraffic-tests", extra_conf={"spark.ui.enabled": "false"}
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def catalog(settings: Settings) -> object:
    """The same Iceberg catalog, opened with pyiceberg's SqlCatalog."""
    from webtraffic.catalog import load_catalog

    return load_catalog(settings)
