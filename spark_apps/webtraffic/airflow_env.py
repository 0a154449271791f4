"""The environment the project's local Airflow runs in, defined once.

``webtraffic airflow ...`` runs any Airflow command in it (the Makefile uses it for
``db migrate`` and ``standalone``); the tests apply it before importing Airflow.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from webtraffic.settings import Settings


def airflow_environment(settings: Settings) -> dict[str, str]:
    """Returns the environment variables of the local Airflow (added to the current ones).

    Airflow home, metadata DB, logs: under the state folder. DAGs and plugins: the project's
    ``dags/`` and ``plugins/``. API server on 127.0.0.1 only, small parallelism for 2 cores,
    examples off, DAGs unpaused at creation.
    """
    home = settings.airflow_home
    venv_bin = str(Path(sys.executable).parent)
    port = settings.airflow_port
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.project_root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.project_root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        # The project package and its settings travel with every Airflow process.
        "WEBTRAFFIC_STATE_DIR": str(settings.state_dir),
        "WEBTRAFFIC_PROFILE": settings.profile,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
    }


def apply_airflow_environment(settings: Settings) -> dict[str, str]:
    """Sets :func:`airflow_environment` in ``os.environ`` (before Airflow is imported).

    Returns:
        The variables that were set.
    """
    env = airflow_environment(settings)
    os.environ.update(env)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    return env


# --- the local Airflow of `make run` ------------------------------------------------------------

AIRFLOW_USER = "admin"
STANDALONE_MARKER = "airflow standalone"


def ensure_password(settings: Settings) -> str:
    """Returns the local login's password, generating it (owner-only file) the first time.

    It lives in ``<state>/airflow/passwords.json`` (``{"admin": "..."}``, the SimpleAuthManager
    passwords file), never in the repository.
    """
    import json
    import secrets

    path = settings.airflow_home / "passwords.json"
    try:
        password = json.loads(path.read_text()).get(AIRFLOW_USER)
    except (OSError, ValueError, AttributeError):
        password = None
    if not isinstance(password, str) or not password:
        path.parent.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(18)
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.chmod(0o600)
        tmp.write_text(json.dumps({AIRFLOW_USER: password}) + "\n")
        tmp.replace(path)
    return password


class LocalAirflow:
    """``airflow standalone`` of the local profile: start, stop, status by its own pid.

    Args:
        settings: Project settings; ``settings.airflow_port`` is the API server / UI port.
        extra_env: Variables added on top of :func:`airflow_environment` (tests use it to start
            DAGs paused, so a UI test server launches no streaming app).
    """

    def __init__(self, settings: Settings, extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.extra_env = dict(extra_env or {})
        self.home = settings.airflow_home
        self.pid_file = self.home / "standalone.pid"
        self.log_file = settings.logs_dir / "airflow-standalone.log"

    @property
    def url(self) -> str:
        """The UI / API base URL."""
        return f"http://127.0.0.1:{self.settings.airflow_port}"

    def pid(self) -> int | None:
        """The pid of the standalone process this project started, if it runs."""
        from webtraffic import processes

        return processes.read_pid(self.pid_file, STANDALONE_MARKER)

    def health(self, timeout: float = 3.0) -> dict[str, object] | None:
        """``GET /api/v2/monitor/health``, or None when it does not answer."""
        import json
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=timeout) as r:
                return json.loads(r.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def healthy(self) -> bool:
        """Whether the metadata DB, scheduler and DAG processor report healthy."""
        health = self.health()
        if not health:
            return False
        parts = ("metadatabase", "scheduler", "dag_processor")
        return all(
            isinstance(health.get(p), dict) and health[p].get("status") == "healthy"  # type: ignore[union-attr]
            for p in parts
        )

    def start(self, timeout: float = 120.0) -> dict[str, object]:
        """Starts ``airflow standalone`` unless it runs; waits until it reports healthy.

        Raises:
            WebtrafficError: The port is taken, or Airflow exited or did not become healthy
                in time (the message names its log file).
        """
        import shutil

        from webtraffic import processes
        from webtraffic.errors import WebtrafficError

        if self.pid() is None:
            port = self.settings.airflow_port
            if processes.port_in_use(port):
                raise WebtrafficError(
                    f"port {port} on 127.0.0.1 is already in use by another process; stop it or "
                    "choose another port with WEBTRAFFIC_AIRFLOW_PORT=<port>"
                )
            env = {**os.environ, **airflow_environment(self.settings), **self.extra_env}
            airflow = shutil.which("airflow", path=env["PATH"])
            if airflow is None:
                raise WebtrafficError("the airflow command is not installed; run `make setup`")
            ensure_password(self.settings)
            self.home.mkdir(parents=True, exist_ok=True)
            proc = processes.start_detached(
                [airflow, "standalone"], log_file=self.log_file, pid_file=self.pid_file, env=env
            )
            ready = processes.wait_until(
                lambda: proc.poll() is not None or self.healthy(), timeout, interval=1.0
            )
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise WebtrafficError(
                    f"airflow standalone exited with code {proc.returncode} during start; "
                    f"see {self.log_file}"
                )
            if not ready:
                raise WebtrafficError(
                    f"Airflow did not become healthy at {self.url} within {timeout:.0f} s; "
                    f"see {self.log_file}"
                )
        return self.status()

    def stop(self, timeout: float = 60.0) -> bool:
        """Stops standalone and every process it spawned (its process group).

        Returns:
            True if it was running.
        """
        import signal

        from webtraffic import processes

        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        # start_detached made it a session (and process group) leader: its scheduler, API server,
        # DAG processor and triggerer are in its group.
        processes.stop_pid(pid, timeout=timeout, cmdline_marker=STANDALONE_MARKER)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            processes.wait_until(lambda: not _group_alive(pid), 15.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> dict[str, object]:
        """State, pid, URL, login and where its log and password file are."""
        pid = self.pid()
        state = "stopped" if pid is None else "running" if self.healthy() else "not-healthy"
        return {
            "state": state,
            "pid": pid,
            "url": self.url,
            "port": self.settings.airflow_port,
            "user": AIRFLOW_USER,
            "passwords_file": str(self.home / "passwords.json"),
            "log_file": str(self.log_file),
        }


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg; ignore the group once all members are zombies.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
