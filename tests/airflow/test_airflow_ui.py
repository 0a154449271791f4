"""Airflow as `make run` starts it: healthy on 127.0.0.1, the documented login, the DAGs listed."""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request

import pytest

from tests.airflow.ui_screenshot import login_token, screenshot_dags
from webtraffic.airflow_env import AIRFLOW_USER, _group_alive, ensure_password
from webtraffic.processes import pid_alive

SCREENSHOT = "airflow-dags.png"


def _get(url: str, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return json.loads(r.read())


def test_healthy_and_bound_to_loopback(airflow_server):
    status = airflow_server.status()
    assert status["state"] == "running"
    assert status["url"].startswith("http://127.0.0.1:")
    health = _get(f"{airflow_server.url}/api/v2/monitor/health")
    assert health["metadatabase"]["status"] == "healthy"
    assert health["scheduler"]["status"] == "healthy"


def test_password_file_is_private_and_login_works(airflow_server):
    settings = airflow_server.settings
    path = settings.airflow_home / "passwords.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = ensure_password(settings)
    assert json.loads(path.read_text()) == {AIRFLOW_USER: password}
    token = login_token(airflow_server.url, AIRFLOW_USER, password)
    dags = _get(f"{airflow_server.url}/api/v2/dags", token)
    assert {"streaming_supervisor", "platform_health"} <= {d["dag_id"] for d in dags["dags"]}
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        login_token(airflow_server.url, AIRFLOW_USER, password + "-wrong")
    assert excinfo.value.code == 401


def test_ui_lists_the_dags_in_headless_chromium(airflow_server, settings):
    out = settings.state_dir / "screenshots" / SCREENSHOT
    text = screenshot_dags(
        airflow_server.url,
        AIRFLOW_USER,
        ensure_password(airflow_server.settings),
        out,
        ["streaming_supervisor", "platform_health"],
    )
    assert "streaming_supervisor" in text
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # a rendered page, not a blank one
    print(f"screenshot: {out}")


def test_stop_ends_every_airflow_process(airflow_server):
    # Last test of the module: stops the session's server (its teardown then finds it stopped).
    pid = airflow_server.pid()
    assert pid is not None
    assert airflow_server.stop() is True
    assert not pid_alive(pid)
    assert not _group_alive(pid), "a process of airflow standalone outlived it"
    assert airflow_server.status()["state"] == "stopped"
    assert airflow_server.stop() is False
