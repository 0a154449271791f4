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
