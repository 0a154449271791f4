"""Every DAG in dags/ imports cleanly, is documented and owned, and does no I/O at parse time."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def dagbag(repo_root, monkeypatch_module):
    # Parsing must not look up connections or variables (that is I/O against the metadata DB).
    from airflow.sdk import BaseHook, Variable

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a DAG file looked up a connection or variable at parse time")

    monkeypatch_module.setattr(BaseHook, "get_connection", forbidden)
    monkeypatch_module.setattr(Variable, "get", forbidden)
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(repo_root / "dags"))


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAG found in dags/"


def test_every_dag_is_documented_owned_and_retried(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert len(dag.doc_md.strip()) > 40, f"{dag_id} has a one-word doc_md"
        for task in dag.tasks:
            assert task.owner, f"{dag_id}.{task.task_id} has no owner"
            assert task.owner != "airflow", f"{dag_id}.{task.task_id} has the default owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
