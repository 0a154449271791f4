"""The local stack as one unit: ``webtraffic stack up | down | status``.

The Kafka broker, the Iceberg catalog files, Airflow (``airflow standalone``) and a traffic
simulator at a modest realtime rate; Airflow's ``streaming_supervisor`` DAG starts and keeps the
streaming apps running. ``down`` stops Airflow first (so nothing restarts the apps), then the
simulator, the apps, then the broker: ``make run`` and ``make clean`` stay one command each.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from webtraffic import processes
from webtraffic.airflow_env import LocalAirflow
from webtraffic.apps import STREAMING_APPS, app_log_file, app_run_dir, runner_marker
from webtraffic.catalog import prepare_local_catalog
from webtraffic.errors import WebtrafficError
from webtraffic.kafka_broker import LocalKafkaBroker
from webtraffic.settings import PROJECT_ROOT, Settings

SIMULATOR_RATE = 10.0
"""Events per second the local stack's simulator sends (``make run`` shows the path moving)."""
SIMULATOR_DURATION_S = 6 * 3600
"""It stops by itself after this long (its ledger grows in memory); ``stack up`` restarts it."""
SIMULATOR_MARKER = "webtraffic.cli simulate"


def _simulator_files(settings: Settings) -> tuple[Any, Any]:
    return settings.state_dir / "simulator" / "simulator.pid", settings.logs_dir / "simulator.log"


def start_simulator(settings: Settings, rate: float = SIMULATOR_RATE) -> int:
    """Starts the realtime traffic simulator in the background unless it runs; returns its pid."""
    pid_file, log_file = _simulator_files(settings)
    pid = processes.read_pid(pid_file, SIMULATOR_MARKER)
    if pid is not None:
        return pid
    argv = [sys.executable, "-m", "webtraffic.cli", "simulate", "--rate", f"{rate:g}",
            "--duration", str(SIMULATOR_DURATION_S), "--seed", str(os.getpid())]  # fmt: skip
    return processes.start_detached(
        argv, log_file, pid_file, cwd=PROJECT_ROOT, ready_marker=SIMULATOR_MARKER
    ).pid


def stop_simulator(settings: Settings) -> bool:
    """Stops the simulator ``stack up`` started; True if it was running."""
    pid = processes.read_pid(_simulator_files(settings)[0], SIMULATOR_MARKER)
    if pid is None:
        return False
    processes.stop_pid(pid, timeout=15.0, cmdline_marker=SIMULATOR_MARKER)
    return True


def _simulator_status(settings: Settings) -> dict[str, Any]:
    pid_file, log_file = _simulator_files(settings)
    pid = processes.read_pid(pid_file, SIMULATOR_MARKER)
    return {
        "state": "running" if pid is not None else "stopped",
        "pid": pid,
        "rate": SIMULATOR_RATE,
        "topic": settings.kafka.topic,
        "log_file": str(log_file),
    }


def _require_local(settings: Settings) -> None:
    if settings.profile != "local":
        raise WebtrafficError(
            "`webtraffic stack` manages the embedded local stack; the databricks profile uses "
            "managed services"
        )


def stack_up(settings: Settings, airflow: bool = True, simulator: bool = True) -> dict[str, Any]:
    """Starts every local component that is not running yet; harmless when already up.

    Args:
        settings: Project settings.
        airflow: Start Airflow too (it then starts the streaming apps through its supervisor).
        simulator: Start the realtime traffic simulator (``SIMULATOR_RATE`` events/s).

    Returns:
        The stack status after start (see :func:`stack_status`).
    """
    _require_local(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    prepare_local_catalog(settings)
    LocalKafkaBroker(settings).start()
    if simulator:
        start_simulator(settings)
    if airflow:
        LocalAirflow(settings).start()
    return stack_status(settings)


def _stop_apps(settings: Settings) -> list[str]:
    """Stops the streaming apps the local launcher started (by their runners' pid files)."""
    stopped = []
    for app in STREAMING_APPS:
        run_dir = app_run_dir(settings, app.name)
        pid = processes.read_pid(run_dir / "runner.pid", runner_marker(app.name))
        if pid is None:
            pid = processes.read_pid(run_dir / "app.pid", "webtraffic.cli")
        if pid is not None:
            processes.stop_pid(pid, timeout=60.0)
            stopped.append(f"app {app.name}")
    return stopped


def _apps_status(settings: Settings) -> dict[str, Any]:
    apps = {}
    for app in STREAMING_APPS:
        run_dir = app_run_dir(settings, app.name)
        runner = processes.read_pid(run_dir / "runner.pid", runner_marker(app.name))
        pid = processes.read_pid(run_dir / "app.pid") if runner is not None else None
        apps[app.name] = {
            "state": "running" if runner is not None else "stopped",
            "pid": pid,
            "command": "webtraffic " + " ".join(app.args),
            "log_file": str(app_log_file(settings, app.name)),
        }
    return apps


def stack_down(settings: Settings) -> list[str]:
    """Stops every local component this project started.

    Returns:
        The names of the components that were running and are now stopped.
    """
    _require_local(settings)
    stopped = []
    if LocalAirflow(settings).stop():
        stopped.append("airflow")
    if stop_simulator(settings):
        stopped.append("simulator")
    stopped.extend(_stop_apps(settings))
    if LocalKafkaBroker(settings).stop():
        stopped.append("kafka")
    return stopped


def stack_status(settings: Settings) -> dict[str, Any]:
    """Tells what runs, on which ports, with which pids, and where the state lives."""
    _require_local(settings)
    return {
        "state_dir": str(settings.state_dir),
        "kafka": LocalKafkaBroker(settings).status().to_dict(),
        "airflow": LocalAirflow(settings).status(),
        "apps": _apps_status(settings),
        "simulator": _simulator_status(settings),
        "catalog": {
            "name": settings.catalog_name,
            "uri": f"sqlite:///{settings.catalog_db}",
            "warehouse": settings.warehouse_dir.as_uri(),
            "exists": settings.catalog_db.exists(),
        },
    }
