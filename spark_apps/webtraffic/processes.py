"""Start, find and stop the detached local processes of the project by their pid files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def pid_alive(pid: int, cmdline_marker: str | None = None) -> bool:
    """Tells whether ``pid`` runs and, if a marker is given, is the process we started.

    The marker guards against a stale pid file whose number the kernel gave to someone else.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":  # a zombie has exited
            return False
        if cmdline_marker is not None:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            return cmdline_marker.encode() in cmdline
    except OSError:
        return cmdline_marker is None
    return True


def read_pid(pid_file: Path, cmdline_marker: str | None = None) -> int | None:
    """Returns the pid recorded in ``pid_file`` if that process still runs, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid, cmdline_marker) else None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Tells whether something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port left in TIME_WAIT by a stopped broker is not "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Tells whether a TCP connection to ``host:port`` is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """Returns a TCP port that is free right now (for tests and ephemeral servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_detached(
    argv: Sequence[str],
    log_file: Path,
    pid_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    ready_marker: str | None = None,
) -> subprocess.Popen[bytes]:
    """Starts ``argv`` in its own session, output appended to ``log_file``, pid in ``pid_file``.

    The process outlives the caller (a CLI command or an Airflow task) and is stopped later by
    :func:`stop_pid` from the pid file. With ``ready_marker`` it returns once the new process
    answers ``pid_alive(pid, ready_marker)`` (or has ended), at most 10 s later.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    if ready_marker is not None:
        # Return only once the pid answers to its marker (or the process has already ended),
        # so that a caller checking the pid file right away never starts a second copy.
        wait_until(lambda: proc.poll() is not None or pid_alive(proc.pid, ready_marker), 10.0)
    return proc


def stop_pid(pid: int, timeout: float = 30.0, cmdline_marker: str | None = None) -> bool:
    """Sends SIGTERM, waits up to ``timeout`` seconds, then SIGKILL.

    Returns:
        True if the process had to be killed, False if it stopped by itself.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    if wait_until(lambda: not pid_alive(pid, cmdline_marker), timeout):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    wait_until(lambda: not pid_alive(pid, cmdline_marker), 10.0)
    return True


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Polls ``condition`` until it is true or ``timeout`` seconds pass.

    Returns:
        Whether the condition became true.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
