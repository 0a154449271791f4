"""The streaming applications of the pipeline, defined once for every launcher.

Each app is one Spark application started with ``webtraffic <args>``: the local launcher runs it
as a detached process, the Databricks launcher as a job whose definition is generated here from
the same entries (:func:`databricks_job_settings`). The supervisor checks the queries an app runs
against ``ops.stream_progress`` and, for the queries that read Kafka, against the topic's end
offsets.

Nothing here does I/O at import: DAG files import this module at parse time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webtraffic.errors import SettingsError
from webtraffic.settings import PROJECT_ROOT, Settings, env_int


@dataclass(frozen=True)
class StreamingApp:
    """One long-running Spark application.

    Attributes:
        name: Short id, used in file names, job names and Airflow task ids.
        args: Arguments of the ``webtraffic`` command that runs it.
        queries: Names of the streaming queries it runs (as in ``ops.stream_progress``).
        kafka_queries: The subset of ``queries`` that read the Kafka events topic; their lag is
            measured against the topic's end offsets.
        description: One line for logs and job descriptions.
    """

    name: str
    args: tuple[str, ...]
    queries: tuple[str, ...]
    kafka_queries: tuple[str, ...]
    description: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"app name {self.name!r} must be lower_snake_case")
        if not set(self.kafka_queries) <= set(self.queries):
            raise ValueError(f"{self.name}: kafka_queries must be a subset of queries")


STREAMING_APPS: tuple[StreamingApp, ...] = (
    StreamingApp(
        name="pipeline",
        args=("stream", "all"),
        queries=(
            "bronze_events_raw",
            "silver",
            "gold_events_enriched",
            "gold_traffic_minute",
            "gold_sessions",
        ),
        kafka_queries=("bronze_events_raw",),
        description="bronze, silver and gold streams in one Spark application "
        "(webtraffic stream all)",
    ),
)
"""Every supervised streaming app. One Spark application for all layers keeps a laptop (and a
single Databricks job cluster) busy with one driver instead of one per layer."""


def get_app(name: str) -> StreamingApp:
    """Returns the app called ``name``.

    Raises:
        SettingsError: No such app.
    """
    for app in STREAMING_APPS:
        if app.name == name:
            return app
    known = ", ".join(a.name for a in STREAMING_APPS)
    raise SettingsError(f"unknown streaming app {name!r} (known: {known})")


# --- local files of an app (shared by the local launcher and `webtraffic stack down`) --------


def app_run_dir(settings: Settings, name: str) -> Path:
    """Folder with the pid files and status of a locally launched app."""
    return settings.state_dir / "apps" / name


def app_log_file(settings: Settings, name: str) -> Path:
    """Log file (stdout and stderr) of a locally launched app."""
    return settings.logs_dir / "apps" / f"{name}.log"


RUNNER_MARKER = "app_runner.py"
"""Part of the command line of the process that runs (and watches) a local app."""


def runner_marker(name: str) -> str:
    """Command-line marker of the runner process of app ``name``."""
    return f"{RUNNER_MARKER} --app {name} "


# --- supervisor configuration -----------------------------------------------------------------

SUPERVISOR_VARIABLES: dict[str, str] = {
    "WEBTRAFFIC_SUPERVISOR_INTERVAL_MINUTES": "streaming_supervisor schedule (default 5)",
    "WEBTRAFFIC_SUPERVISOR_STALL_SECONDS": "a query whose newest progress row is older than this "
    "while Kafka has new data is stalled (default 300)",
    "WEBTRAFFIC_SUPERVISOR_MAX_LAG_RECORDS": "lag behind the topic end reported as lagging "
    "(default 100000)",
    "WEBTRAFFIC_SUPERVISOR_MAX_RESTARTS_PER_HOUR": "restarts of one app per hour before the "
    "supervisor fails instead (default 3)",
    "WEBTRAFFIC_SUPERVISOR_STARTUP_GRACE_SECONDS": "an app started less than this ago is not "
    "judged on progress yet (default 180)",
}


@dataclass(frozen=True)
class SupervisorConfig:
    """Schedule and thresholds of the ``streaming_supervisor`` DAG (defaults of its params)."""

    interval_minutes: int = 5
    stall_seconds: int = 300
    max_lag_records: int = 100_000
    max_restarts_per_hour: int = 3
    startup_grace_seconds: int = 180

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SupervisorConfig:
        """Reads ``WEBTRAFFIC_SUPERVISOR_*`` (see ``SUPERVISOR_VARIABLES``); no I/O."""
        env = os.environ if environ is None else environ
        return cls(
            interval_minutes=env_int(env, "WEBTRAFFIC_SUPERVISOR_INTERVAL_MINUTES", 5, 1, 1440),
            stall_seconds=env_int(env, "WEBTRAFFIC_SUPERVISOR_STALL_SECONDS", 300, 1, 86400),
            max_lag_records=env_int(
                env, "WEBTRAFFIC_SUPERVISOR_MAX_LAG_RECORDS", 100_000, 0, 10**12
            ),
            max_restarts_per_hour=env_int(
                env, "WEBTRAFFIC_SUPERVISOR_MAX_RESTARTS_PER_HOUR", 3, 0, 60
            ),
            startup_grace_seconds=env_int(
                env, "WEBTRAFFIC_SUPERVISOR_STARTUP_GRACE_SECONDS", 180, 0, 86400
            ),
        )


# --- Databricks job definitions ---------------------------------------------------------------

DATABRICKS_VARIABLES: dict[str, str] = {
    "WEBTRAFFIC_DATABRICKS_WHEEL": "the webtraffic wheel the job installs (a /Volumes/... or "
    "workspace path; required to launch on Databricks)",
    "WEBTRAFFIC_DATABRICKS_SPARK_VERSION": "job cluster runtime (default 17.3.x-scala2.13)",
    "WEBTRAFFIC_DATABRICKS_NODE_TYPE": "job cluster node type (default i3.xlarge)",
    "WEBTRAFFIC_DATABRICKS_WORKERS": "job cluster workers (default 1)",
    "WEBTRAFFIC_DATABRICKS_CLUSTER_ID": "run on this existing cluster instead of a job cluster",
    "WEBTRAFFIC_DATABRICKS_SQL_WAREHOUSE": "SQL warehouse id the supervisor reads "
    "ops.stream_progress with (required to supervise on Databricks)",
    "WEBTRAFFIC_DATABRICKS_SECRET_SCOPE": "secret scope holding kafka-sasl-username, "
    "kafka-sasl-password and ipinfo-token (default webtraffic)",
}

# The job installs these pins of requirements.txt next to the wheel (the runtime brings Spark).
DATABRICKS_PYPI_PACKAGES = ("confluent-kafka", "cachetools", "maxminddb", "requests")


@dataclass(frozen=True)
class DatabricksJobOptions:
    """Cluster and packaging of the Databricks jobs (read from ``WEBTRAFFIC_DATABRICKS_*``)."""

    wheel: str = ""
    spark_version: str = "17.3.x-scala2.13"
    node_type_id: str = "i3.xlarge"
    num_workers: int = 1
    existing_cluster_id: str = ""
    secret_scope: str = "webtraffic"
    sql_warehouse_id: str = ""
    pypi: tuple[str, ...] = field(default_factory=lambda: pinned(DATABRICKS_PYPI_PACKAGES))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DatabricksJobOptions:
        """Reads ``WEBTRAFFIC_DATABRICKS_*`` (see ``DATABRICKS_VARIABLES``)."""
        env = os.environ if environ is None else environ
        return cls(
            wheel=env.get("WEBTRAFFIC_DATABRICKS_WHEEL", "").strip(),
            spark_version=env.get("WEBTRAFFIC_DATABRICKS_SPARK_VERSION", "").strip()
            or "17.3.x-scala2.13",
            node_type_id=env.get("WEBTRAFFIC_DATABRICKS_NODE_TYPE", "").strip() or "i3.xlarge",
            num_workers=env_int(env, "WEBTRAFFIC_DATABRICKS_WORKERS", 1, 0, 1000),
            existing_cluster_id=env.get("WEBTRAFFIC_DATABRICKS_CLUSTER_ID", "").strip(),
            secret_scope=env.get("WEBTRAFFIC_DATABRICKS_SECRET_SCOPE", "").strip() or "webtraffic",
            sql_warehouse_id=env.get("WEBTRAFFIC_DATABRICKS_SQL_WAREHOUSE", "").strip(),
        )


def pinned(names: tuple[str, ...], requirements: Path | None = None) -> tuple[str, ...]:
    """Returns ``name==version`` for each name as pinned in requirements.txt (name alone if not)."""
    path = requirements or PROJECT_ROOT / "requirements.txt"
    pins: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
            if match:
                pins[match.group(1).lower()] = match.group(2)
    return tuple(f"{n}=={pins[n.lower()]}" if n.lower() in pins else n for n in names)


def databricks_job_name(app: StreamingApp) -> str:
    """The Databricks job name of an app (the launcher finds the job by it)."""
    return f"webtraffic-{app.name.replace('_', '-')}"


def databricks_secret_env(scope: str) -> dict[str, str]:
    """Credential variables as secret references: the job resolves them, no value is written."""
    return {
        "WEBTRAFFIC_KAFKA_SASL_USERNAME": f"{{{{secrets/{scope}/kafka-sasl-username}}}}",
        "WEBTRAFFIC_KAFKA_SASL_PASSWORD": f"{{{{secrets/{scope}/kafka-sasl-password}}}}",
        "WEBTRAFFIC_IPINFO_TOKEN": f"{{{{secrets/{scope}/ipinfo-token}}}}",
    }


def databricks_task(app: StreamingApp, options: DatabricksJobOptions) -> dict[str, Any]:
    """The task of an app: the ``webtraffic`` wheel entry point with the app's arguments."""
    if not options.wheel:
        raise SettingsError(
            "WEBTRAFFIC_DATABRICKS_WHEEL is not set: build the wheel (pip wheel --no-deps .), "
            "upload it to a volume and name its path"
        )
    task: dict[str, Any] = {
        "task_key": app.name,
        "description": app.description,
        "python_wheel_task": {
            "package_name": "webtraffic",
            "entry_point": "webtraffic",
            "parameters": list(app.args),
        },
        "libraries": [{"whl": options.wheel}, *({"pypi": {"package": p}} for p in options.pypi)],
        # Airflow's supervisor restarts it (bounded per hour); Databricks must not also retry.
        "max_retries": 0,
        "timeout_seconds": 0,
    }
    if options.existing_cluster_id:
        task["existing_cluster_id"] = options.existing_cluster_id
    else:
        task["job_cluster_key"] = "streaming"
    return task


def databricks_job_settings(
    app: StreamingApp, settings: Settings, options: DatabricksJobOptions
) -> dict[str, Any]:
    """Generates the Jobs API 2.2 settings of ``app`` from the app list and the settings.

    They are the body of ``jobs/create`` and the ``new_settings`` of ``jobs/reset``: no job is
    maintained by hand.

    Credentials appear only as ``{{secrets/<scope>/<key>}}`` references.
    """
    env = {
        "WEBTRAFFIC_PROFILE": "databricks",
        "WEBTRAFFIC_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "WEBTRAFFIC_KAFKA_TOPIC": settings.kafka.topic,
        "WEBTRAFFIC_KAFKA_SASL_MECHANISM": settings.kafka.sasl_mechanism,
        "WEBTRAFFIC_CATALOG": settings.catalog_name,
        "WEBTRAFFIC_CHECKPOINT_ROOT": settings.checkpoint_root,
        **databricks_secret_env(options.secret_scope),
    }
    job: dict[str, Any] = {
        "name": databricks_job_name(app),
        "description": f"webtraffic streaming app {app.name}: {app.description}",
        "tags": {"project": "webtraffic", "app": app.name, "managed-by": "airflow"},
        "max_concurrent_runs": 1,
        "timeout_seconds": 0,
        "tasks": [databricks_task(app, options)],
    }
    # An existing cluster (WEBTRAFFIC_DATABRICKS_CLUSTER_ID) brings the same variables in its
    # own spark_env_vars; a job cluster gets them here.
    if not options.existing_cluster_id:
        job["job_clusters"] = [
            {
                "job_cluster_key": "streaming",
                "new_cluster": {
                    "spark_version": options.spark_version,
                    "node_type_id": options.node_type_id,
                    "num_workers": options.num_workers,
                    "spark_env_vars": env,
                    "spark_conf": {"spark.sql.session.timeZone": "UTC"},
                },
            }
        ]
    return job
