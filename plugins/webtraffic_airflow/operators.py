"""Operators of the webtraffic DAGs, in the manner of the apache/airflow providers.

Constructors only store their arguments (DAG files are parsed often); settings, connections,
Variables, hooks and heavy libraries are touched in ``execute`` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class StreamingSupervisorOperator(BaseOperator):
    """Checks streaming apps (alive, progressing, lag) and restarts dead or stalled ones.

    Fails when an app could not be restarted or was restarted ``max_restarts_per_hour`` times in
    the last hour. Logs one line per app; returns the verdicts (XCom).

    Args:
        app_names: Apps of ``webtraffic.apps.STREAMING_APPS`` to supervise (all if empty).
        stall_seconds: Newest progress row older than this while Kafka has new data = stalled.
        max_lag_records: Lag above this is reported as lagging.
        max_restarts_per_hour: Restarts of one app per hour before failing instead.
        startup_grace_seconds: An app younger than this is not judged on progress yet.
        databricks_conn_id: Workspace connection (databricks profile).
        variable_prefix: Prefix of the Airflow Variables holding restart times and run ids.
    """

    template_fields: Sequence[str] = (
        "app_names",
        "stall_seconds",
        "max_lag_records",
        "max_restarts_per_hour",
        "startup_grace_seconds",
        "databricks_conn_id",
    )
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        app_names: Sequence[str] | str = (),
        stall_seconds: float | str = 300,
        max_lag_records: int | str = 100_000,
        max_restarts_per_hour: int | str = 3,
        startup_grace_seconds: float | str = 180,
        databricks_conn_id: str = "databricks_default",
        variable_prefix: str = "webtraffic_",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.app_names = app_names
        self.stall_seconds = stall_seconds
        self.max_lag_records = max_lag_records
        self.max_restarts_per_hour = max_restarts_per_hour
        self.startup_grace_seconds = startup_grace_seconds
        self.databricks_conn_id = databricks_conn_id
        self.variable_prefix = variable_prefix

    def execute(self, context: Any) -> list[dict[str, Any]]:  # noqa: D102
        from webtraffic.apps import STREAMING_APPS, DatabricksJobOptions, get_app
        from webtraffic.errors import WebtrafficError
        from webtraffic.settings import Settings
        from webtraffic_airflow.launchers import launcher_for
        from webtraffic_airflow.stores import AirflowVariableStore
        from webtraffic_airflow.supervisor import (
            DatabricksSqlProgressSource,
            IcebergProgressSource,
            KafkaEndOffsets,
            RestartHistory,
            Thresholds,
            supervise,
        )

        names = [self.app_names] if isinstance(self.app_names, str) else list(self.app_names)
        apps = tuple(get_app(n) for n in names) if names else STREAMING_APPS
        settings = Settings.from_env()
        thresholds = Thresholds(
            stall_seconds=float(self.stall_seconds),
            max_lag_records=int(self.max_lag_records),
            max_restarts_per_hour=int(self.max_restarts_per_hour),
            startup_grace_seconds=float(self.startup_grace_seconds),
        )
        store = AirflowVariableStore(self.variable_prefix)
        if settings.profile == "databricks":
            options = DatabricksJobOptions.from_env()
            if not options.sql_warehouse_id:
                raise WebtrafficError(
                    "WEBTRAFFIC_DATABRICKS_SQL_WAREHOUSE is not set: the supervisor reads "
                    "ops.stream_progress through a SQL warehouse"
                )
            launcher = launcher_for(
                settings, store, databricks_conn_id=self.databricks_conn_id, options=options
            )
            progress: Any = DatabricksSqlProgressSource(
                settings, options.sql_warehouse_id, self.databricks_conn_id
            )
        else:
            launcher = launcher_for(settings, store)
            progress = IcebergProgressSource(settings)
        self.log.info(
            "supervising %s with the %s launcher; topic %s; %s",
            ", ".join(a.name for a in apps),
            launcher.kind,
            settings.kafka.topic,
            thresholds,
        )
        verdicts = supervise(
            apps,
            launcher,
            progress,
            KafkaEndOffsets(settings),
            RestartHistory(store),
            thresholds,
            settings.kafka.topic,
            log=self.log.info,
        )
        return [
            {"app": v.app, "action": v.action, "lag_records": v.lag_records, "line": v.line()}
            for v in verdicts
        ]
