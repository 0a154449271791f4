"""Contract tests of the Databricks launcher against a Jobs API double on 127.0.0.1.

The launcher talks through the provider's real ``DatabricksHook`` (connection
``databricks_default`` = the double, bearer token); the double checks the token and answers with
the Jobs API's shapes. Checked: the generated job JSON, the endpoints and their order, the state
mapping, retries, and that the supervisor restarts a failed run (and stops at the bound).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

import pytest

from tests.conftest import create_topic
from webtraffic.apps import STREAMING_APPS, DatabricksJobOptions, databricks_job_settings, pinned
from webtraffic.settings import Settings

APP = STREAMING_APPS[0]
WHEEL = "/Volumes/main/webtraffic/dist/webtraffic-0.1.0-py3-none-any.whl"
SECRET_REF = "{{{{secrets/webtraffic-prod/{}}}}}"
# Generated per run: a credential must never be a literal in the repo.
SASL_PASSWORD = secrets.token_urlsafe(24)


@pytest.fixture
def db_settings(tmp_path) -> Settings:
    return Settings.from_env(
        {
            "WEBTRAFFIC_PROFILE": "databricks",
            "WEBTRAFFIC_STATE_DIR": str(tmp_path),
            "WEBTRAFFIC_KAFKA_BOOTSTRAP": "pkc-test.eu-west-1.aws.confluent.cloud:9092",
            "WEBTRAFFIC_KAFKA_SASL_USERNAME": "svc-webtraffic",
            "WEBTRAFFIC_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
            "WEBTRAFFIC_CHECKPOINT_ROOT": "/Volumes/main/webtraffic/checkpoints",
            "WEBTRAFFIC_CATALOG": "main",
        }
    )


@pytest.fixture
def options() -> DatabricksJobOptions:
    return DatabricksJobOptions(wheel=WHEEL, secret_scope="webtraffic-prod")


@pytest.fixture
def launcher(jobs_api, db_settings, options, tmp_path):
    from webtraffic_airflow.launchers import DatabricksLauncher
    from webtraffic_airflow.stores import JsonFileStore

    return DatabricksLauncher(
        db_settings, JsonFileStore(tmp_path / "store.json"), options=options, retry_delay=0.01
    )


def expected_job(db_settings, options) -> dict:
    return {
        "name": "webtraffic-pipeline",
        "description": f"webtraffic streaming app pipeline: {APP.description}",
        "tags": {"project": "webtraffic", "app": "pipeline", "managed-by": "airflow"},
        "max_concurrent_runs": 1,
        "timeout_seconds": 0,
        "tasks": [
            {
                "task_key": "pipeline",
                "description": APP.description,
                "python_wheel_task": {
                    "package_name": "webtraffic",
                    "entry_point": "webtraffic",
                    "parameters": ["stream", "all"],
                },
                "libraries": [{"whl": WHEEL}, *({"pypi": {"package": p}} for p in options.pypi)],
                "max_retries": 0,
                "timeout_seconds": 0,
                "job_cluster_key": "streaming",
            }
        ],
        "job_clusters": [
            {
                "job_cluster_key": "streaming",
                "new_cluster": {
                    "spark_version": "17.3.x-scala2.13",
                    "node_type_id": "i3.xlarge",
                    "num_workers": 1,
                    "spark_conf": {"spark.sql.session.timeZone": "UTC"},
                    "spark_env_vars": {
                        "WEBTRAFFIC_PROFILE": "databricks",
                        "WEBTRAFFIC_KAFKA_BOOTSTRAP": "pkc-test.eu-west-1.aws.confluent.cloud:9092",
                        "WEBTRAFFIC_KAFKA_TOPIC": "web.events",
                        "WEBTRAFFIC_KAFKA_SASL_MECHANISM": "PLAIN",
                        "WEBTRAFFIC_CATALOG": "main",
                        "WEBTRAFFIC_CHECKPOINT_ROOT": "/Volumes/main/webtraffic/checkpoints",
                        "WEBTRAFFIC_KAFKA_SASL_USERNAME": SECRET_REF.format("kafka-sasl-username"),
                        "WEBTRAFFIC_KAFKA_SASL_PASSWORD": SECRET_REF.format("kafka-sasl-password"),
                        "WEBTRAFFIC_IPINFO_TOKEN": SECRET_REF.format("ipinfo-token"),
                    },
                },
            }
        ],
    }


def test_pypi_pins_come_from_requirements(options):
    assert "confluent-kafka==2.16.1" in options.pypi
    assert all("==" in p for p in pinned(("cachetools", "maxminddb", "requests")))


def test_first_start_creates_the_generated_job_and_runs_it(
    jobs_api, launcher, db_settings, options
):
    state = launcher.start(APP)

    create = jobs_api.calls("POST", "2.2/jobs/create")
    assert len(create) == 1
    assert create[0].body == expected_job(db_settings, options)
    assert create[0].body == databricks_job_settings(APP, db_settings, options)
    assert SASL_PASSWORD not in json.dumps(create[0].body)
    # Found by name first (none yet), then created, then run-now with the new job id.
    listing = jobs_api.calls("GET", "2.2/jobs/list")
    assert listing
    assert listing[0].query["name"] == "webtraffic-pipeline"
    job_id = next(iter(jobs_api.jobs))
    run_now = jobs_api.calls("POST", "2.2/jobs/run-now")
    assert [r.body for r in run_now] == [{"job_id": job_id}]
    assert all(r.authorization == f"Bearer {jobs_api.token}" for r in jobs_api.requests)
    assert [r.path.removeprefix("/api/") for r in jobs_api.requests] == [
        "2.2/jobs/list",
        "2.2/jobs/create",
        "2.2/jobs/run-now",
        "2.2/jobs/runs/get",
    ]
    assert state.phase == "starting"  # PENDING
    run_id = next(iter(jobs_api.runs))
    assert state.ident == f"run {run_id}"
    assert state.log.endswith(f"/#job/{job_id}/run/{run_id}")
    assert launcher.state(APP).phase == "running"
    # Starting a running app does not start a second run.
    launcher.start(APP)
    assert len(jobs_api.calls("POST", "2.2/jobs/run-now")) == 1


def test_existing_job_is_found_across_pages_and_reset(jobs_api, launcher, db_settings, options):
    # Other jobs fill the first pages of jobs/list (page size 2 in the double).
    for i in range(3):
        jobs_api.jobs[10 + i] = {"job_id": 10 + i, "settings": {"name": f"other-{i}", "tasks": []}}
    stale = {"name": "webtraffic-pipeline", "tasks": [{"task_key": "old"}]}
    jobs_api.jobs[20] = {"job_id": 20, "settings": stale}

    launcher.start(APP)

    assert jobs_api.calls("POST", "2.2/jobs/create") == []
    reset = jobs_api.calls("POST", "2.2/jobs/reset")
    assert len(reset) == 1
    assert reset[0].body == {
        "job_id": "20",
        "new_settings": databricks_job_settings(APP, db_settings, options),
    }
    assert jobs_api.calls("POST", "2.2/jobs/run-now")[0].body == {"job_id": 20}


def test_stop_cancels_and_waits_for_the_end(jobs_api, launcher):
    launcher.start(APP)
    run_id = next(iter(jobs_api.runs))
    assert launcher.stop(APP, timeout=10) is True
    assert [r.body for r in jobs_api.calls("POST", "2.2/jobs/runs/cancel")] == [{"run_id": run_id}]
    state = launcher.state(APP)
    assert state.phase == "exited"
    assert state.exit_code == 1
    assert state.detail.startswith("TERMINATED CANCELED")
    assert launcher.stop(APP) is False


@pytest.mark.parametrize(
    ("life_cycle", "result", "phase", "code"),
    [
        ("PENDING", None, "starting", None),
        ("QUEUED", None, "starting", None),
        ("BLOCKED", None, "starting", None),
        ("WAITING_FOR_RETRY", None, "starting", None),
        ("RUNNING", None, "running", None),
        ("TERMINATING", None, "stopping", None),
        ("TERMINATED", "SUCCESS", "exited", 0),
        ("TERMINATED", "FAILED", "exited", 1),
        ("TERMINATED", "TIMEDOUT", "exited", 1),
        ("TERMINATED", "CANCELED", "exited", 1),
        ("SKIPPED", None, "exited", 1),
        ("INTERNAL_ERROR", None, "exited", 1),
    ],
)
def test_states_map(jobs_api, launcher, life_cycle, result, phase, code):
    launcher.start(APP)
    run_id = next(iter(jobs_api.runs))
    launcher.state(APP)  # PENDING -> RUNNING in the double
    if result:
        jobs_api.finish_run(run_id, result, "boom")
    else:
        jobs_api.set_life_cycle(run_id, life_cycle)
    state = launcher.state(APP)
    assert (state.phase, state.exit_code) == (phase, code)
    assert state.alive == (phase in ("starting", "running", "stopping"))


def test_submit_mode_sends_a_one_time_run(jobs_api, db_settings, options, tmp_path):
    from webtraffic_airflow.launchers import DatabricksLauncher
    from webtraffic_airflow.stores import JsonFileStore

    launcher = DatabricksLauncher(
        db_settings, JsonFileStore(tmp_path / "s.json"), options=options, mode="submit"
    )
    launcher.start(APP)
    submit = jobs_api.calls("POST", "2.2/jobs/runs/submit")
    assert len(submit) == 1
    body = submit[0].body
    job = databricks_job_settings(APP, db_settings, options)
    assert body["run_name"] == "webtraffic-pipeline"
    task = body["tasks"][0]
    assert task["python_wheel_task"] == job["tasks"][0]["python_wheel_task"]
    assert task["new_cluster"] == job["job_clusters"][0]["new_cluster"]
    assert "job_cluster_key" not in task
    assert jobs_api.calls("POST", "2.2/jobs/create") == []
    assert launcher.state(APP).phase == "running"


def test_transient_errors_are_retried(jobs_api, launcher):
    jobs_api.fail_next(1, 503, "jobs/list")
    jobs_api.fail_next(1, 429, "run-now")
    launcher.start(APP)
    assert len(jobs_api.calls("POST", "2.2/jobs/run-now")) == 2
    assert len(jobs_api.runs) == 1


def test_wrong_token_fails_clearly(jobs_api, launcher):
    jobs_api.token = secrets.token_urlsafe(16)
    with pytest.raises(Exception, match="401"):
        launcher.start(APP)


def test_a_failed_run_is_restarted_then_bounded(
    jobs_api, launcher, settings, kafka_broker, tmp_path
):
    from webtraffic_airflow.stores import JsonFileStore
    from webtraffic_airflow.supervisor import (
        DatabricksSqlProgressSource,
        KafkaEndOffsets,
        RestartHistory,
        SupervisorError,
        Thresholds,
        supervise,
    )

    # Kafka end offsets come from the real test broker; progress rows from the SQL API double.
    topic = "test.databricks.supervisor"
    create_topic(settings, topic, partitions=2)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    jobs_api.statement_rows = [
        [q, now, json.dumps({topic: {"0": 0, "1": 0}}), "7"] for q in APP.queries
    ]
    progress = DatabricksSqlProgressSource(launcher.settings, "wh-123")
    history = RestartHistory(JsonFileStore(tmp_path / "history.json"))
    thresholds = Thresholds(max_restarts_per_hour=2, confirm_seconds=0.2)
    lines: list[str] = []

    def run_supervisor() -> list:
        return supervise(
            (APP,),
            launcher,
            progress,
            KafkaEndOffsets(settings),
            history,
            thresholds,
            topic,
            log=lines.append,
        )

    launcher.start(APP)
    first = next(iter(jobs_api.runs))
    launcher.state(APP)
    jobs_api.finish_run(first, "FAILED", "org.apache.spark.SparkException: boom")

    [verdict] = run_supervisor()
    assert verdict.action == "restarted"
    assert (
        "dead: exited with code 1: TERMINATED FAILED: org.apache.spark.SparkException" in lines[0]
    )
    assert len(jobs_api.calls("POST", "2.2/jobs/run-now")) == 2
    assert "FROM ops.stream_progress" in jobs_api.statements[0]
    second = max(jobs_api.runs)
    assert second != first
    assert launcher.state(APP).ident == f"run {second}"

    # Healthy and progressing: nothing to do.
    [ok] = run_supervisor()
    assert ok.action == "ok", ok.line()

    # Fails twice more: one more restart is allowed, then the bound is reached.
    jobs_api.finish_run(second, "FAILED", "again")
    assert run_supervisor()[0].action == "restarted"
    jobs_api.finish_run(max(jobs_api.runs), "FAILED", "and again")
    with pytest.raises(SupervisorError, match="restart bound reached"):
        run_supervisor()
    assert len(jobs_api.calls("POST", "2.2/jobs/run-now")) == 3
