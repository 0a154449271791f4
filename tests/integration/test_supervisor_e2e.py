"""End to end on the real local stack: a crashed streaming app is brought back by the supervisor.

`webtraffic stream all` is started through the local launcher on a topic of its own, fed by the
simulator, killed with SIGKILL mid-run; more traffic arrives while it is down; the
`streaming_supervisor` DAG runs with `dag.test()`, sees the app dead and restarts it; the app
resumes from its checkpoints and catches up. silver.events (read with pyiceberg, no second
SparkSession) must then hold exactly the ledger's valid unique event ids: no loss, no duplicate.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import create_topic
from webtraffic.apps import get_app
from webtraffic.processes import pid_alive, wait_until
from webtraffic.settings import Settings

pytestmark = pytest.mark.integration

PLUGINS = os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"]
if PLUGINS not in sys.path:
    sys.path.append(PLUGINS)


def silver_event_ids(catalog, topic: str) -> list[str]:
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
    from pyiceberg.expressions import EqualTo

    try:
        table = catalog.load_table("silver.events")
    except (NoSuchTableError, NoSuchNamespaceError):
        return []
    table.refresh()
    scan = table.scan(row_filter=EqualTo("kafka_topic", topic), selected_fields=("event_id",))
    return scan.to_arrow().column("event_id").to_pylist()


@pytest.fixture(scope="module")
def airflow_db(settings: Settings) -> None:
    """The test Airflow home's metadata DB, migrated once (dag.test() needs it)."""
    log = settings.logs_dir / "airflow-db-migrate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        subprocess.run(
            [str(os.path.join(os.path.dirname(sys.executable), "airflow")), "db", "migrate"],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            env=os.environ.copy(),
        )


def test_supervisor_restarts_a_killed_app_without_loss_or_duplicates(
    kafka_broker, settings, catalog, airflow_db, tmp_path, monkeypatch
):
    from airflow.dag_processing.dagbag import DagBag
    from webtraffic_airflow.launchers import LocalLauncher

    from webtraffic.simulator.oracle import valid_unique
    from webtraffic.simulator.run import KafkaSink, simulate

    topic = f"test.e2e.{os.getpid()}"
    create_topic(settings, topic, partitions=3)
    # The app, the supervisor task and this test all read these through Settings.from_env().
    monkeypatch.setenv("WEBTRAFFIC_KAFKA_TOPIC", topic)
    monkeypatch.setenv("WEBTRAFFIC_CHECKPOINT_ROOT", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("WEBTRAFFIC_SPARK_MASTER", "local[2]")
    local = Settings.from_env()
    app = get_app("pipeline")
    launcher = LocalLauncher(local)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        started = launcher.start(app)
        assert started.alive, started.describe()
        _, first = simulate(
            KafkaSink(local, topic),
            seed=71,
            events=3_000,
            start=now - timedelta(hours=2),
            ledger_path=tmp_path / "ledger-1.jsonl",
            progress=False,
        )
        # Wait until silver has some of it, then kill the app mid-run.
        assert wait_until(lambda: len(silver_event_ids(catalog, topic)) > 0, 240, interval=2), (
            f"silver never got rows; see {started.log}"
        )
        pid = int(launcher.state(app).ident.removeprefix("pid "))
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: launcher.state(app).phase == "exited", 30)
        assert launcher.state(app).exit_code == -signal.SIGKILL

        # Traffic goes on while the app is down.
        _, second = simulate(
            KafkaSink(local, topic),
            seed=72,
            events=3_000,
            start=now - timedelta(hours=1),
            ledger_path=tmp_path / "ledger-2.jsonl",
            progress=False,
        )

        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        assert bag.import_errors == {}
        dag = bag.get_dag("streaming_supervisor")
        t0 = time.monotonic()
        run = dag.test()
        supervise_seconds = time.monotonic() - t0
        assert str(run.state) in ("success", "DagRunState.SUCCESS"), run.state

        again = launcher.state(app)
        assert again.phase == "running", again.describe()
        assert again.ident != f"pid {pid}"
        assert not pid_alive(pid)

        expected = {row["event_id"] for row in valid_unique([*first, *second])}
        assert len(expected) > 5_000

        def caught_up() -> bool:
            return set(silver_event_ids(catalog, topic)) >= expected

        assert wait_until(caught_up, 300, interval=3), (
            f"silver did not catch up: {len(set(silver_event_ids(catalog, topic)))} of "
            f"{len(expected)} ids; see {again.log}"
        )
        # Stop the app cleanly (it waits for its queries to end): whatever it was still writing
        # has landed, so the count below is final.
        launcher.stop(app, timeout=60)
        ids = silver_event_ids(catalog, topic)
        duplicates = [i for i, n in Counter(ids).items() if n > 1]
        assert duplicates == []
        assert set(ids) == expected
        print(f"supervisor dag.test() took {supervise_seconds:.1f} s; silver holds {len(ids)} ids")
    finally:
        launcher.stop(app, timeout=60)
