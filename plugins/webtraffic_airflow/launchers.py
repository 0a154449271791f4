"""Launchers of the streaming apps: one interface, a local and a Databricks implementation.

``start(app)``, ``stop(app)`` and ``state(app)`` mean the same on both:

* :class:`LocalLauncher` runs ``webtraffic <args>`` as a detached process (through
  ``app_runner.py``, which records the exit code) with its log and pid files under the state
  folder; state is running / exited (with exit code) / not-started.
* :class:`DatabricksLauncher` runs the app as a Databricks job generated from the same app list
  (``webtraffic.apps.databricks_job_settings``), through the provider's ``DatabricksHook`` on
  connection ``databricks_default``: ``jobs/list`` + ``jobs/create`` or ``jobs/reset``, then
  ``jobs/run-now`` (or ``runs/submit``), ``runs/get`` and ``runs/cancel``.

:func:`launcher_for` picks one by the settings' profile.
"""

from __future__ import annotations

import json
import os
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from webtraffic import processes
from webtraffic.apps import (
    DatabricksJobOptions,
    StreamingApp,
    app_log_file,
    app_run_dir,
    databricks_job_name,
    databricks_job_settings,
    databricks_task,
    runner_marker,
)
from webtraffic.errors import WebtrafficError
from webtraffic.settings import Settings
from webtraffic_airflow.stores import KeyValueStore

if TYPE_CHECKING:
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

RUNNER_SCRIPT = Path(__file__).with_name("app_runner.py")

Phase = Literal["not-started", "starting", "running", "stopping", "exited"]
ALIVE_PHASES: tuple[Phase, ...] = ("starting", "running", "stopping")


@dataclass
class AppState:
    """What a launcher knows about an app right now.

    Attributes:
        app: App name.
        phase: ``not-started``, ``starting``, ``running``, ``stopping`` or ``exited``.
        exit_code: For ``exited``: the exit code (negative = killed by that signal; Databricks:
            0 for SUCCESS, 1 otherwise), None when unknown.
        started_at: When the current (or last) run started.
        ident: pid (local) or run id (Databricks).
        detail: One human line (result state, how it ended).
        log: Where to read the app's output: a log file or the run page URL.
    """

    app: str
    phase: Phase
    exit_code: int | None = None
    started_at: datetime | None = None
    ident: str | None = None
    detail: str = ""
    log: str = ""

    @property
    def alive(self) -> bool:
        """Whether the app runs or is about to (starting, running, stopping)."""
        return self.phase in ALIVE_PHASES

    def describe(self) -> str:
        """A short phrase: ``running (pid 123)``, ``exited with code -9``, ``not started``."""
        if self.phase == "not-started":
            return "not started"
        if self.phase == "exited":
            if self.exit_code is None:
                text = "exited (exit code unknown)"
            elif self.exit_code < 0:
                text = f"exited, killed by signal {-self.exit_code}"
            else:
                text = f"exited with code {self.exit_code}"
            return f"{text}{': ' + self.detail if self.detail else ''}"
        return f"{self.phase} ({self.ident})" if self.ident else self.phase

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat() if self.started_at else None
        return data


class Launcher(ABC):
    """Starts, stops and tells the state of streaming apps."""

    kind: str = ""

    @abstractmethod
    def start(self, app: StreamingApp) -> AppState:
        """Starts ``app`` unless it is alive; it resumes from its checkpoints."""

    @abstractmethod
    def stop(self, app: StreamingApp, timeout: float = 60.0) -> bool:
        """Stops ``app``; returns whether it was alive."""

    @abstractmethod
    def state(self, app: StreamingApp) -> AppState:
        """Tells the app's current state."""

    def restart(self, app: StreamingApp, timeout: float = 60.0) -> AppState:
        """Stops ``app`` if it is alive, then starts it."""
        self.stop(app, timeout=timeout)
        return self.start(app)

    def log_tail(self, app: StreamingApp, lines: int = 20) -> list[str]:
        """The last lines of the app's output, where the launcher can read them."""
        return []


# --- local ------------------------------------------------------------------------------------


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class LocalLauncher(Launcher):
    """Runs apps as detached local processes: ``<python> -m webtraffic.cli <args>``.

    Files of app ``NAME``: ``<state>/apps/NAME/{runner.pid,app.pid,status.json}`` and the log
    ``<state>/logs/apps/NAME.log``. The process inherits this process's environment (so it sees
    the same ``WEBTRAFFIC_*`` settings) and outlives the caller.

    Args:
        settings: Project settings (state folder).
        python: Interpreter with the webtraffic package; this one by default.
        command: What runs an app, before the app's arguments; ``<python> -m webtraffic.cli``
            (the ``webtraffic`` command) by default.
    """

    kind = "local"

    def __init__(
        self, settings: Settings, python: str | None = None, command: list[str] | None = None
    ) -> None:
        self.settings = settings
        self.python = python or sys.executable
        self.command = command or [self.python, "-m", "webtraffic.cli"]

    def _files(self, app: StreamingApp) -> tuple[Path, Path, Path]:
        run_dir = app_run_dir(self.settings, app.name)
        return run_dir / "runner.pid", run_dir / "app.pid", run_dir / "status.json"

    def _status(self, app: StreamingApp) -> dict[str, Any]:
        try:
            data = json.loads(self._files(app)[2].read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def runner_pid(self, app: StreamingApp) -> int | None:
        """Pid of the runner of ``app`` if it still runs."""
        return processes.read_pid(self._files(app)[0], runner_marker(app.name))

    def state(self, app: StreamingApp) -> AppState:  # noqa: D102
        runner_file, app_pid_file, _ = self._files(app)
        log = str(app_log_file(self.settings, app.name))
        status = self._status(app)
        started = _parse_time(status.get("started_at"))
        runner = self.runner_pid(app)
        if runner is not None:
            pid = processes.read_pid(app_pid_file)
            if pid is None or status.get("runner_pid") != runner:
                return AppState(app.name, "starting", started_at=started, ident=None, log=log)
            return AppState(app.name, "running", started_at=started, ident=f"pid {pid}", log=log)
        if status.get("state") == "exited":
            code = status.get("exit_code")
            return AppState(
                app.name,
                "exited",
                exit_code=code if isinstance(code, int) else None,
                started_at=started,
                ident=f"pid {status.get('pid')}",
                detail="stopped on request" if status.get("stopped_by_request") else "",
                log=log,
            )
        if runner_file.exists() or status:
            # The runner died without recording the end: killed together with its app.
            return AppState(
                app.name,
                "exited",
                started_at=started,
                ident=f"pid {status.get('pid')}" if status.get("pid") else None,
                detail="its runner was killed",
                log=log,
            )
        return AppState(app.name, "not-started", log=log)

    def start(self, app: StreamingApp) -> AppState:  # noqa: D102
        current = self.state(app)
        if current.alive:
            return current
        runner_file, app_pid_file, status_file = self._files(app)
        runner_file.parent.mkdir(parents=True, exist_ok=True)
        status_file.unlink(missing_ok=True)
        app_pid_file.unlink(missing_ok=True)
        log = app_log_file(self.settings, app.name)
        argv = [
            self.python,
            str(RUNNER_SCRIPT),
            "--app",
            app.name,
            "--status-file",
            str(status_file),
            "--app-pid-file",
            str(app_pid_file),
            "--",
            *self.command,
            *app.args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write(f"\n==== {datetime.now(UTC).isoformat()} starting {app.name} ====\n")
        proc = processes.start_detached(argv, log_file=log, pid_file=runner_file, env=env)
        # The runner writes the status file once the app process exists.
        processes.wait_until(lambda: status_file.exists() or proc.poll() is not None, 30.0)
        return self.state(app)

    def stop(self, app: StreamingApp, timeout: float = 60.0) -> bool:  # noqa: D102
        app_pid_file = self._files(app)[1]
        runner = self.runner_pid(app)
        if runner is not None:
            # The runner forwards SIGTERM to the app and records its exit code.
            processes.stop_pid(runner, timeout=timeout, cmdline_marker=runner_marker(app.name))
            return True
        orphan = processes.read_pid(app_pid_file, "webtraffic.cli")
        if orphan is not None:
            processes.stop_pid(orphan, timeout=timeout, cmdline_marker="webtraffic.cli")
            app_pid_file.unlink(missing_ok=True)
            return True
        return False

    def log_tail(self, app: StreamingApp, lines: int = 20) -> list[str]:  # noqa: D102
        log = app_log_file(self.settings, app.name)
        try:
            with log.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 64 * 1024))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]


# --- Databricks -------------------------------------------------------------------------------

# Jobs API life cycle states -> launcher phases.
_LIFE_CYCLE_PHASES: dict[str, Phase] = {
    "QUEUED": "starting",
    "PENDING": "starting",
    "BLOCKED": "starting",
    "WAITING_FOR_RETRY": "starting",
    "RUNNING": "running",
    "TERMINATING": "stopping",
    "TERMINATED": "exited",
    "SKIPPED": "exited",
    "INTERNAL_ERROR": "exited",
}


def databricks_phase(run: dict[str, Any]) -> tuple[Phase, int | None, str]:
    """Maps a ``runs/get`` answer to (phase, exit code, detail).

    A terminated run exits with 0 when its result state is SUCCESS and 1 otherwise (FAILED,
    TIMEDOUT, CANCELED, ...); SKIPPED and INTERNAL_ERROR exit with 1 too.
    """
    state = run.get("state") or {}
    life_cycle = str(state.get("life_cycle_state", ""))
    result = str(state.get("result_state", "") or "")
    message = str(state.get("state_message", "") or "")
    phase = _LIFE_CYCLE_PHASES.get(life_cycle)
    if phase is None:
        raise WebtrafficError(f"Databricks run {run.get('run_id')}: unknown state {life_cycle!r}")
    if phase != "exited":
        return phase, None, life_cycle
    code = 0 if life_cycle == "TERMINATED" and result == "SUCCESS" else 1
    detail = " ".join(p for p in (life_cycle, result) if p) + (f": {message}" if message else "")
    return phase, code, detail


class DatabricksLauncher(Launcher):
    """Runs apps as Databricks jobs through the provider's ``DatabricksHook``.

    The constructor does no I/O; the hook (and with it the connection lookup) is created on
    first use. The run id of each app's current run is kept in ``store`` (an Airflow Variable
    in the DAG), so any worker can find it.

    Args:
        settings: Project settings (Kafka, catalog, checkpoints of the job's environment).
        store: Where the current run id of each app is kept.
        databricks_conn_id: The Airflow connection of the workspace.
        options: Cluster and packaging of the jobs; from ``WEBTRAFFIC_DATABRICKS_*`` if omitted.
        mode: ``job`` (a named job kept in sync with ``jobs/create``/``jobs/reset``, started
            with ``jobs/run-now``) or ``submit`` (a one-time run, ``runs/submit``).
        retry_limit: Attempts of one API call (the hook retries 5xx, 429, connection errors).
        retry_delay: First wait between attempts, in seconds.
    """

    kind = "databricks"

    def __init__(
        self,
        settings: Settings,
        store: KeyValueStore,
        databricks_conn_id: str = "databricks_default",
        options: DatabricksJobOptions | None = None,
        mode: Literal["job", "submit"] = "job",
        retry_limit: int = 3,
        retry_delay: float = 1.0,
    ) -> None:
        if mode not in ("job", "submit"):
            raise ValueError(f"mode must be 'job' or 'submit', got {mode!r}")
        self.settings = settings
        self.store = store
        self.databricks_conn_id = databricks_conn_id
        self.options = options
        self.mode = mode
        self.retry_limit = retry_limit
        self.retry_delay = retry_delay

    @cached_property
    def hook(self) -> DatabricksHook:
        """The provider's hook, created on first use."""
        from airflow.providers.databricks.hooks.databricks import DatabricksHook

        return DatabricksHook(
            databricks_conn_id=self.databricks_conn_id,
            retry_limit=self.retry_limit,
            retry_delay=self.retry_delay,
            caller="webtraffic.DatabricksLauncher",
        )

    @cached_property
    def job_options(self) -> DatabricksJobOptions:
        """Cluster and packaging options (the environment's unless given)."""
        return self.options or DatabricksJobOptions.from_env()

    def _run_key(self, app: StreamingApp) -> str:
        return f"databricks_run_{app.name}"

    def job_settings(self, app: StreamingApp) -> dict[str, Any]:
        """The generated Jobs API settings of ``app``."""
        return databricks_job_settings(app, self.settings, self.job_options)

    def ensure_job(self, app: StreamingApp) -> int:
        """Creates the app's job, or resets it to the generated settings; returns its id."""
        settings = self.job_settings(app)
        job_id = self.hook.find_job_id_by_name(databricks_job_name(app))
        if job_id is None:
            return int(self.hook.create_job(settings))
        self.hook.reset_job(str(job_id), settings)
        return int(job_id)

    def _submit_body(self, app: StreamingApp) -> dict[str, Any]:
        job = self.job_settings(app)
        body: dict[str, Any] = {
            "run_name": databricks_job_name(app),
            "tasks": [databricks_task(app, self.job_options)],
            "timeout_seconds": 0,
        }
        if "job_clusters" in job:
            body["tasks"][0].pop("job_cluster_key", None)
            body["tasks"][0]["new_cluster"] = job["job_clusters"][0]["new_cluster"]
        return body

    def start(self, app: StreamingApp) -> AppState:  # noqa: D102
        current = self.state(app)
        if current.alive:
            return current
        if self.mode == "job":
            job_id = self.ensure_job(app)
            run_id = self.hook.run_now({"job_id": job_id})
        else:
            run_id = self.hook.submit_run(self._submit_body(app))
        self.store.set(self._run_key(app), str(run_id))
        return self.state(app)

    def _run(self, app: StreamingApp) -> dict[str, Any] | None:
        run_id = self.store.get(self._run_key(app))
        if not run_id:
            return None
        return self.hook.get_run(int(run_id))

    def state(self, app: StreamingApp) -> AppState:  # noqa: D102
        run = self._run(app)
        if run is None:
            return AppState(app.name, "not-started")
        phase, code, detail = databricks_phase(run)
        start_ms = run.get("start_time")
        return AppState(
            app.name,
            phase,
            exit_code=code,
            started_at=datetime.fromtimestamp(start_ms / 1000, tz=UTC) if start_ms else None,
            ident=f"run {run.get('run_id')}",
            detail=detail,
            log=str(run.get("run_page_url", "")),
        )

    def stop(self, app: StreamingApp, timeout: float = 60.0) -> bool:  # noqa: D102
        current = self.state(app)
        if not current.alive:
            return False
        run_id = int(str(self.store.get(self._run_key(app))))
        self.hook.cancel_run(run_id)
        deadline = time.monotonic() + timeout
        while self.state(app).alive:
            if time.monotonic() >= deadline:
                raise WebtrafficError(
                    f"Databricks run {run_id} of {app.name} did not stop within {timeout:.0f} s"
                )
            time.sleep(min(2.0, max(0.05, timeout / 20)))
        return True


def launcher_for(settings: Settings, store: KeyValueStore, **databricks_kwargs: Any) -> Launcher:
    """The launcher of the settings' profile: local processes or Databricks jobs."""
    if settings.profile == "databricks":
        return DatabricksLauncher(settings, store, **databricks_kwargs)
    return LocalLauncher(settings)
