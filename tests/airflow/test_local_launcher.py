"""The local launcher runs real detached processes: running / exited (with code) / not started."""

from __future__ import annotations

import os
import signal

from tests.airflow.conftest import toy_app
from webtraffic import processes
from webtraffic.apps import app_log_file


def test_not_started(toy_launcher):
    state = toy_launcher.state(toy_app("never", "run", "30"))
    assert state.phase == "not-started"
    assert not state.alive
    assert state.describe() == "not started"


def test_start_stop_and_exit_code(toy_launcher, local_settings):
    app = toy_app("toy", "run", "60")
    state = toy_launcher.start(app)
    assert state.phase == "running", state
    assert state.started_at is not None
    pid = int(state.ident.removeprefix("pid "))
    assert processes.pid_alive(pid)
    # Starting a running app is harmless: same process.
    assert toy_launcher.start(app).ident == state.ident
    # Once it has set up its SIGTERM handler, a stop is a clean exit.
    log_file = app_log_file(local_settings, "toy")
    assert processes.wait_until(lambda: "toy app: running" in log_file.read_text(), 10)

    assert toy_launcher.stop(app, timeout=10) is True
    stopped = toy_launcher.state(app)
    assert stopped.phase == "exited"
    assert stopped.exit_code == 0
    assert stopped.detail == "stopped on request"
    assert not processes.pid_alive(pid)
    assert toy_launcher.stop(app) is False
    log = app_log_file(local_settings, "toy").read_text()
    assert "toy app: running" in log
    assert "toy app: stopping cleanly" in log


def test_sigkill_is_seen_as_exit_by_signal(toy_launcher):
    app = toy_app("victim", "run", "60")
    pid = int(toy_launcher.start(app).ident.removeprefix("pid "))
    os.kill(pid, signal.SIGKILL)
    assert processes.wait_until(lambda: toy_launcher.state(app).phase == "exited", 10)
    state = toy_launcher.state(app)
    assert state.exit_code == -signal.SIGKILL
    assert state.describe() == "exited, killed by signal 9"
    # It starts again (the real apps resume from their checkpoints).
    again = toy_launcher.start(app)
    assert again.phase == "running"
    assert again.ident != f"pid {pid}"


def test_failing_app_reports_its_code_and_log(toy_launcher):
    app = toy_app("broken", "fail", "3")
    toy_launcher.start(app)
    assert processes.wait_until(lambda: toy_launcher.state(app).phase == "exited", 10)
    assert toy_launcher.state(app).exit_code == 3
    assert any("failing on purpose" in line for line in toy_launcher.log_tail(app))


def test_killing_the_runner_kills_the_app(toy_launcher):
    app = toy_app("orphan", "run", "60")
    pid = int(toy_launcher.start(app).ident.removeprefix("pid "))
    runner = toy_launcher.runner_pid(app)
    os.kill(runner, signal.SIGKILL)
    assert processes.wait_until(lambda: not processes.pid_alive(pid), 10), "app outlived runner"
    state = toy_launcher.state(app)
    assert state.phase == "exited"
    assert state.exit_code is None
    assert "runner was killed" in state.detail
