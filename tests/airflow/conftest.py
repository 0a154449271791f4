"""Fixtures of the Airflow tests: the launcher's toy app and the Databricks double's connection."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.airflow.jobs_api_double import JobsApiDouble
from webtraffic.apps import StreamingApp
from webtraffic.settings import Settings

TOY_APP = Path(__file__).with_name("toy_app.py")

# As Airflow does for its processes: the plugins folder is importable (webtraffic_airflow).
_PLUGINS = os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"]
if _PLUGINS not in sys.path:
    sys.path.append(_PLUGINS)


def toy_app(name: str, *args: str) -> StreamingApp:
    """An app the local launcher runs as ``python toy_app.py ARGS``."""
    return StreamingApp(
        name=name,
        args=args,
        queries=("toy_query",),
        kafka_queries=("toy_query",),
        description="toy app of the launcher tests",
    )


@pytest.fixture
def local_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Test settings with a state folder of this test's own."""
    return dataclasses.replace(settings, state_dir=tmp_path / "state")


@pytest.fixture
def toy_launcher(local_settings: Settings) -> Iterator[object]:
    """A LocalLauncher that runs toy apps; stops whatever a test left running."""
    from webtraffic_airflow.launchers import LocalLauncher

    launcher = LocalLauncher(local_settings, command=[sys.executable, str(TOY_APP)])
    started: list[StreamingApp] = []
    original = launcher.start

    def start(app: StreamingApp) -> object:
        started.append(app)
        return original(app)

    launcher.start = start  # type: ignore[method-assign]
    yield launcher
    for app in started:
        launcher.stop(app, timeout=10)


@pytest.fixture
def jobs_api() -> Iterator[JobsApiDouble]:
    """The Jobs API double, and ``databricks_default`` pointing at it (bearer token)."""
    token = secrets.token_urlsafe(16)
    with JobsApiDouble(token=token) as double:
        conn = {
            "conn_type": "databricks",
            "host": "127.0.0.1",
            "port": double.port,
            "schema": "http",
            "password": token,
        }
        old = os.environ.get("AIRFLOW_CONN_DATABRICKS_DEFAULT")
        os.environ["AIRFLOW_CONN_DATABRICKS_DEFAULT"] = json.dumps(conn)
        try:
            yield double
        finally:
            if old is None:
                os.environ.pop("AIRFLOW_CONN_DATABRICKS_DEFAULT", None)
            else:
                os.environ["AIRFLOW_CONN_DATABRICKS_DEFAULT"] = old


@pytest.fixture(scope="session")
def airflow_server(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """``airflow standalone`` as ``make run`` starts it, once per session, on a free port.

    It has a state folder of its own (its own metadata DB) and starts DAGs paused, so its
    scheduler launches no streaming app next to the other tests.
    """
    from webtraffic.airflow_env import LocalAirflow
    from webtraffic.processes import free_port

    state = tmp_path_factory.mktemp("airflow-ui")
    ui_settings = dataclasses.replace(settings, state_dir=state, airflow_port=free_port())
    airflow = LocalAirflow(
        ui_settings, extra_env={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"}
    )
    airflow.start(timeout=180)
    try:
        yield airflow
    finally:
        airflow.stop()
