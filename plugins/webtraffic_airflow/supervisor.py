"""The streaming supervisor: is each app alive, progressing, not lagging? Restart it if not.

For every app of ``webtraffic.apps.STREAMING_APPS``:

1. **alive** — the launcher's state (local process or Databricks run).
2. **progressing** — each query's newest ``ops.stream_progress`` row is younger than
   ``stall_seconds`` whenever Kafka holds records the app has not read yet. An app started less
   than ``startup_grace_seconds`` ago is not judged yet (Spark needs time to start).
3. **lag** — records between the app's Kafka position (``end_offsets`` of its newest progress
   row) and the topic's end offsets (read with confluent-kafka); above ``max_lag_records`` the app
   is reported as lagging (a restart would not make it faster).

A dead or stalled app is (re)started — it resumes from its checkpoints — unless it has already
been restarted ``max_restarts_per_hour`` times in the last hour: then the check fails loudly.
Every verdict is one readable line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from webtraffic.apps import StreamingApp
from webtraffic.errors import WebtrafficError
from webtraffic.settings import Settings
from webtraffic_airflow.launchers import AppState, Launcher
from webtraffic_airflow.stores import KeyValueStore

if TYPE_CHECKING:
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

PROGRESS_TABLE = "ops.stream_progress"
LOOKBACK = timedelta(days=1)


class SupervisorError(WebtrafficError):
    """An app could not be kept running (restart failed or the hourly bound was reached)."""


@dataclass(frozen=True)
class Thresholds:
    """When an app counts as stalled or lagging, and how often it may be restarted."""

    stall_seconds: float = 300.0
    max_lag_records: int = 100_000
    max_restarts_per_hour: int = 3
    startup_grace_seconds: float = 180.0
    confirm_seconds: float = 5.0
    """After a (re)start, how long the app must stay alive to count as restarted."""


@dataclass(frozen=True)
class QueryProgress:
    """The newest ``ops.stream_progress`` row of one query."""

    query_name: str
    ts: datetime
    end_offsets: str | None = None
    batch_id: int | None = None


# --- sources ----------------------------------------------------------------------------------


class ProgressSource(Protocol):
    """Reads the newest progress row per query."""

    def latest(self, queries: tuple[str, ...]) -> dict[str, QueryProgress]:
        """Returns the newest row of each query that has one (within a day)."""


class EndOffsetSource(Protocol):
    """Reads a topic's end offsets."""

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Returns partition -> end offset (the offset the next record will get)."""


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class IcebergProgressSource:
    """Reads ``ops.stream_progress`` with pyiceberg (local profile): no Spark needed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def latest(self, queries: tuple[str, ...]) -> dict[str, QueryProgress]:  # noqa: D102
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
        from pyiceberg.expressions import And, GreaterThanOrEqual, In

        from webtraffic.catalog import load_catalog

        try:
            table = load_catalog(self.settings).load_table(PROGRESS_TABLE)
        except (NoSuchTableError, NoSuchNamespaceError):
            return {}
        since = (datetime.now(UTC) - LOOKBACK).isoformat()
        rows = (
            table.scan(
                row_filter=And(In("query_name", set(queries)), GreaterThanOrEqual("ts", since)),
                selected_fields=("query_name", "ts", "end_offsets", "batch_id"),
            )
            .to_arrow()
            .to_pylist()
        )
        newest: dict[str, QueryProgress] = {}
        for row in rows:
            name, ts = row["query_name"], _utc(row["ts"])
            if name not in newest or ts > newest[name].ts:
                newest[name] = QueryProgress(name, ts, row["end_offsets"], row["batch_id"])
        return newest


class DatabricksSqlProgressSource:
    """Reads ``ops.stream_progress`` through the SQL Statement Execution API (Databricks).

    Args:
        settings: Project settings (the catalog).
        warehouse_id: The SQL warehouse that runs the query.
        databricks_conn_id: The Airflow connection of the workspace.
        timeout: Seconds to wait for the statement.
    """

    def __init__(
        self,
        settings: Settings,
        warehouse_id: str,
        databricks_conn_id: str = "databricks_default",
        timeout: float = 120.0,
    ) -> None:
        self.settings = settings
        self.warehouse_id = warehouse_id
        self.databricks_conn_id = databricks_conn_id
        self.timeout = timeout
        self._hook: DatabricksHook | None = None

    @property
    def hook(self) -> DatabricksHook:
        """The provider's hook, created on first use."""
        if self._hook is None:
            from airflow.providers.databricks.hooks.databricks import DatabricksHook

            self._hook = DatabricksHook(databricks_conn_id=self.databricks_conn_id)
        return self._hook

    def latest(self, queries: tuple[str, ...]) -> dict[str, QueryProgress]:  # noqa: D102
        names = ", ".join(f"'{q}'" for q in queries if q.replace("_", "").isalnum())
        statement = (
            "SELECT query_name, max(ts) AS ts, max_by(end_offsets, ts) AS end_offsets, "
            f"max_by(batch_id, ts) AS batch_id FROM {PROGRESS_TABLE} "
            f"WHERE ts >= current_timestamp() - INTERVAL 1 DAY AND query_name IN ({names}) "
            "GROUP BY query_name"
        )
        body = {
            "warehouse_id": self.warehouse_id,
            "catalog": self.settings.catalog_name,
            "statement": statement,
            "wait_timeout": "30s",
            "on_wait_timeout": "CONTINUE",
            "disposition": "INLINE",
            "format": "JSON_ARRAY",
        }
        answer = self.hook._do_api_call(("POST", "2.0/sql/statements"), body)
        deadline = time.monotonic() + self.timeout
        while answer["status"]["state"] in ("PENDING", "RUNNING"):
            if time.monotonic() >= deadline:
                raise WebtrafficError(f"reading {PROGRESS_TABLE} took over {self.timeout:.0f} s")
            time.sleep(1.0)
            answer = self.hook._do_api_call(("GET", f"2.0/sql/statements/{answer['statement_id']}"))
        if answer["status"]["state"] != "SUCCEEDED":
            error = answer["status"].get("error", {}).get("message", answer["status"]["state"])
            raise WebtrafficError(f"reading {PROGRESS_TABLE} failed: {error}")
        newest: dict[str, QueryProgress] = {}
        for name, ts, offsets, batch in answer.get("result", {}).get("data_array", []) or []:
            newest[name] = QueryProgress(
                name,
                _utc(datetime.fromisoformat(ts.replace("Z", "+00:00"))),
                offsets,
                int(batch) if batch is not None else None,
            )
        return newest


class KafkaEndOffsets:
    """End offsets of a topic from the configured Kafka, with confluent-kafka."""

    def __init__(self, settings: Settings, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout

    def end_offsets(self, topic: str) -> dict[int, int]:  # noqa: D102
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer(
            {
                **self.settings.kafka.client_config(),
                "group.id": "webtraffic-supervisor",
                "enable.auto.commit": False,
            }
        )
        try:
            metadata = consumer.list_topics(topic, timeout=self.timeout)
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                raise WebtrafficError(f"topic {topic}: {info.error if info else 'missing'}")
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=self.timeout)[1]
                for p in sorted(info.partitions)
            }
        except KafkaException as exc:
            raise WebtrafficError(
                f"Kafka at {self.settings.kafka.bootstrap_servers} did not answer: {exc}"
            ) from exc
        finally:
            consumer.close()


class RestartHistory:
    """When each app was (re)started by the supervisor, kept in a key-value store."""

    def __init__(self, store: KeyValueStore) -> None:
        self.store = store

    def _key(self, app: str) -> str:
        return f"supervisor_restarts_{app}"

    def since(self, app: str, since: datetime) -> list[datetime]:
        """Restart times of ``app`` at or after ``since``."""
        raw = self.store.get(self._key(app))
        try:
            times = [_utc(datetime.fromisoformat(t)) for t in json.loads(raw or "[]")]
        except (ValueError, TypeError):
            times = []
        return sorted(t for t in times if t >= since)

    def record(self, app: str, when: datetime) -> None:
        """Adds a restart (and forgets those older than a day)."""
        keep = [*self.since(app, when - timedelta(days=1)), when]
        self.store.set(self._key(app), json.dumps([t.isoformat() for t in keep]))


# --- the checks -------------------------------------------------------------------------------

Action = Literal["ok", "lagging", "started", "restarted", "failed"]


def kafka_position(end_offsets: str | None, topic: str) -> dict[int, int] | None:
    """Partition -> next offset to read, from a Kafka source's offsets JSON."""
    if not end_offsets:
        return None
    try:
        data = json.loads(end_offsets)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get(topic), dict):
        return None
    return {int(p): int(o) for p, o in data[topic].items()}


def kafka_lag(position: Mapping[int, int] | None, end: Mapping[int, int]) -> int:
    """Records between a position and the end offsets (all of them when there is no position)."""
    position = position or {}
    return sum(max(0, offset - position.get(p, 0)) for p, offset in end.items())


def _ago(now: datetime, then: datetime) -> str:
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


@dataclass
class Verdict:
    """The outcome of supervising one app, and its one log line."""

    app: str
    action: Action
    state: str
    reasons: list[str] = field(default_factory=list)
    lag_records: int | None = None
    restarts_last_hour: int = 0
    log_tail: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether the supervisor could not keep the app running."""
        return self.action == "failed"

    def line(self) -> str:
        """``app: state; checks; -> action (reason)``."""
        lag = f"; kafka lag {self.lag_records:,} records" if self.lag_records is not None else ""
        reasons = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        restarts = f"; restarts in the last hour: {self.restarts_last_hour}"
        return f"{self.app}: {self.state}{lag}{restarts} -> {self.action.upper()}{reasons}"


def supervise_app(
    app: StreamingApp,
    launcher: Launcher,
    progress: ProgressSource,
    offsets: EndOffsetSource,
    history: RestartHistory,
    thresholds: Thresholds,
    topic: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Verdict:
    """Checks one app and restarts it if it is dead or stalled (see the module doc)."""
    started = now()
    state = launcher.state(app)
    recent = history.since(app.name, started - timedelta(hours=1))
    end = offsets.end_offsets(topic) if app.kafka_queries else {}
    latest = progress.latest(app.queries)

    lag: int | None = None
    if app.kafka_queries:
        lag = max(
            kafka_lag(kafka_position(getattr(latest.get(q), "end_offsets", None), topic), end)
            for q in app.kafka_queries
        )
    progress_text = ", ".join(
        f"{q} {_ago(started, latest[q].ts)}" if q in latest else f"{q} never" for q in app.queries
    )
    state_text = state.describe()
    if state.alive and state.started_at is not None:
        state_text += f" since {_ago(started, state.started_at)}"
    state_text += f"; progress: {progress_text}"
    verdict = Verdict(app.name, "ok", state_text, lag_records=lag, restarts_last_hour=len(recent))

    if state.alive:
        age = (started - state.started_at).total_seconds() if state.started_at else None
        if age is not None and age < thresholds.startup_grace_seconds:
            verdict.reasons.append(
                f"starting up, judged after {thresholds.startup_grace_seconds:g} s"
            )
            return verdict
        new_data = lag is None or lag > 0
        stale = [
            q
            for q in app.queries
            if q not in latest
            or (started - latest[q].ts).total_seconds() > thresholds.stall_seconds
        ]
        if not (new_data and stale):
            if lag is not None and lag > thresholds.max_lag_records:
                verdict.action = "lagging"
                verdict.reasons.append(
                    f"lag above {thresholds.max_lag_records:,} records while progressing"
                )
            return verdict
        reason = (
            f"stalled: no progress of {', '.join(stale)} for over {thresholds.stall_seconds:g} s "
            "while Kafka has new records"
        )
    elif state.phase == "not-started":
        reason = "not started"
    else:
        reason = f"dead: {state.describe()}"

    verdict.reasons.append(reason)
    if len(recent) >= thresholds.max_restarts_per_hour:
        verdict.action = "failed"
        verdict.reasons.append(
            f"restart bound reached ({len(recent)} restarts in the last hour, at most "
            f"{thresholds.max_restarts_per_hour}): not restarting; fix the cause, see {state.log}"
        )
        verdict.log_tail = launcher.log_tail(app)
        return verdict

    verdict.log_tail = launcher.log_tail(app) if state.phase == "exited" else []
    history.record(app.name, started)
    verdict.restarts_last_hour = len(recent) + 1
    after = launcher.restart(app) if state.alive else launcher.start(app)
    after = _confirm(launcher, app, after, thresholds.confirm_seconds)
    if not after.alive:
        verdict.action = "failed"
        verdict.reasons.append(f"restart failed: {after.describe()}, see {after.log}")
        verdict.log_tail = launcher.log_tail(app)
        return verdict
    verdict.action = "started" if state.phase == "not-started" else "restarted"
    verdict.reasons.append(f"now {after.describe()}, log {after.log}")
    return verdict


def _confirm(launcher: Launcher, app: StreamingApp, state: AppState, seconds: float) -> AppState:
    """Watches a freshly started app for ``seconds``; returns its state at the end (or death)."""
    deadline = time.monotonic() + seconds
    while state.alive and time.monotonic() < deadline:
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        state = launcher.state(app)
    return state


def supervise(
    apps: tuple[StreamingApp, ...],
    launcher: Launcher,
    progress: ProgressSource,
    offsets: EndOffsetSource,
    history: RestartHistory,
    thresholds: Thresholds,
    topic: str,
    log: Callable[[str], Any] = print,
) -> list[Verdict]:
    """Supervises every app, logs one line each (and a failed app's log tail).

    Raises:
        SupervisorError: At least one app could not be kept running (after all were checked).
    """
    verdicts = []
    for app in apps:
        verdict = supervise_app(app, launcher, progress, offsets, history, thresholds, topic)
        log(verdict.line())
        if verdict.log_tail and verdict.action in ("restarted", "failed"):
            log(f"{app.name}: last lines of its log:\n  " + "\n  ".join(verdict.log_tail))
        verdicts.append(verdict)
    failed = [v for v in verdicts if v.failed]
    if failed:
        raise SupervisorError("; ".join(f"{v.app}: {v.reasons[-1]}" for v in failed))
    return verdicts
