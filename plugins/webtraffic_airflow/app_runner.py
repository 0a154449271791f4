"""Runs one streaming app as a child process and records how it ended (standard library only).

The local launcher starts this script detached (``webtraffic_app_runner --app NAME ...``). It
starts the app, writes the app's pid file and a status file, forwards SIGTERM/SIGINT to the app,
and when the app ends writes its exit code (negative: killed by that signal). If the runner itself
is killed, the kernel kills the app too (``PR_SET_PDEATHSIG``), so no orphan keeps a checkpoint.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """Starts the app, waits for it, records its end; returns the app's exit status."""
    parser = argparse.ArgumentParser(prog="webtraffic_app_runner")
    parser.add_argument("--app", required=True)
    parser.add_argument("--status-file", required=True, type=Path)
    parser.add_argument("--app-pid-file", required=True, type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")

    status: dict[str, object] = {
        "app": args.app,
        "state": "running",
        "runner_pid": os.getpid(),
        "command": command,
        "started_at": _now(),
    }
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    status["pid"] = child.pid
    args.app_pid_file.write_text(f"{child.pid}\n")
    _write_json(args.status_file, status)
    print(f"[runner] {args.app}: started pid {child.pid}: {' '.join(command)}", flush=True)

    stop_requested: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stop_requested.append(signum)
        child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    status.update(
        state="exited",
        exit_code=code,
        stopped_by_request=bool(stop_requested),
        ended_at=_now(),
    )
    _write_json(args.status_file, status)
    args.app_pid_file.unlink(missing_ok=True)
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    print(f"[runner] {args.app}: pid {child.pid} ended ({how})", flush=True)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
