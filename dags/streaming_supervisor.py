"""
### Streaming supervisor

Keeps the long-running Spark Structured Streaming apps of webtraffic running. For each app
(`webtraffic.apps.STREAMING_APPS`; today `pipeline` = `webtraffic stream all`) the task
`supervise_<app>` checks:

* **alive** — the launcher's state: a local process (local profile) or a Databricks job run
  (databricks profile, connection `databricks_default`);
* **progressing** — each query's newest `ops.stream_progress` row is younger than
  `stall_seconds` whenever Kafka holds records the app has not read;
* **lag** — records between the app's Kafka position and the topic's end offsets; above
  `max_lag_records` it is reported as lagging.

A dead or stalled app is restarted and resumes from its checkpoints. After
`max_restarts_per_hour` restarts in an hour the task **fails** instead (red in the UI): read the
app's log (its path, or the Databricks run page, is in the task log, with the log's last lines).
Each run writes one line per app to the task log, e.g.
`pipeline: running (pid 4242) since 3 min ago; progress: ... ; kafka lag 120 records -> OK`.

Schedule: every `WEBTRAFFIC_SUPERVISOR_INTERVAL_MINUTES` minutes (default 5). Thresholds are the
DAG params (defaults from `WEBTRAFFIC_SUPERVISOR_*`); trigger with other values from the UI.
Restart times live in the Variables `webtraffic_supervisor_restarts_<app>`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag
from webtraffic_airflow.operators import StreamingSupervisorOperator

from webtraffic.apps import STREAMING_APPS, SupervisorConfig

config = SupervisorConfig.from_env()


@dag(
    dag_id="streaming_supervisor",
    schedule=timedelta(minutes=config.interval_minutes),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    doc_md=__doc__,
    tags=["webtraffic", "streaming", "supervisor"],
    default_args={"owner": "data-platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "stall_seconds": Param(config.stall_seconds, type="integer", minimum=1),
        "max_lag_records": Param(config.max_lag_records, type="integer", minimum=0),
        "max_restarts_per_hour": Param(config.max_restarts_per_hour, type="integer", minimum=0),
        "startup_grace_seconds": Param(config.startup_grace_seconds, type="integer", minimum=0),
    },
)
def streaming_supervisor() -> None:
    for app in STREAMING_APPS:
        StreamingSupervisorOperator(
            task_id=f"supervise_{app.name}",
            doc_md=f"Supervises `{app.name}`: {app.description}.",
            app_names=[app.name],
            stall_seconds="{{ params.stall_seconds }}",
            max_lag_records="{{ params.max_lag_records }}",
            max_restarts_per_hour="{{ params.max_restarts_per_hour }}",
            startup_grace_seconds="{{ params.startup_grace_seconds }}",
        )


streaming_supervisor()
