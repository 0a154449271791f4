"""Screenshot of the Airflow UI's DAG list, taken with headless Chromium (DevTools protocol).

Logs in as the documented local user (``POST /auth/token`` with the password from the
SimpleAuthManager passwords file), hands the token to the browser as the UI's ``_token`` cookie,
opens ``/dags``, waits until the expected DAG ids are on the page and saves a PNG.

By hand, against the stack of ``make run``::

    .venv/bin/python tests/airflow/ui_screenshot.py --out airflow-dags.png
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1440,900",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class ScreenshotError(RuntimeError):
    """The browser or the UI did not cooperate; the message says what to do."""


def find_chromium() -> str:
    """Returns the Chromium executable, or raises with the one-line fix."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise ScreenshotError(
        "chromium not found: `make test` installs it (apt-get install -y chromium); "
        "or install it yourself"
    )


def login_token(base_url: str, user: str, password: str) -> str:
    """``POST /auth/token`` of SimpleAuthManager; returns the JWT."""
    request = urllib.request.Request(
        f"{base_url}/auth/token",
        data=json.dumps({"username": user, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())["access_token"]


class _Cdp:
    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=30)
        self.next_id = 0

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise ScreenshotError(f"{method}: {message['error']}")
                return message.get("result", {})

    def close(self) -> None:
        self.ws.close()


def screenshot_dags(
    base_url: str, user: str, password: str, out: Path, expect: list[str], timeout: float = 90.0
) -> str:
    """Saves a PNG of ``/dags`` once every id of ``expect`` shows; returns the page text."""
    chromium = find_chromium()
    token = login_token(base_url, user, password)
    # Chromium's helper processes may still write to the profile for a moment after the browser
    # exits: they are stopped as a process group, and a leftover file never fails the cleanup.
    with tempfile.TemporaryDirectory(
        prefix="webtraffic-chromium-", ignore_cleanup_errors=True
    ) as profile:
        browser = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                if browser.poll() is not None or time.monotonic() > deadline:
                    raise ScreenshotError(f"{chromium} did not start (exit {browser.poll()})")
                time.sleep(0.1)
            port = int(port_file.read_text().splitlines()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                page = next(t for t in json.loads(r.read()) if t["type"] == "page")
            cdp = _Cdp(page["webSocketDebuggerUrl"])
            try:
                cdp.call("Network.enable")
                cdp.call("Network.setCookie", name="_token", value=token, url=base_url, path="/")
                cdp.call("Page.enable")
                cdp.call("Page.navigate", url=f"{base_url}/dags")
                # Ready when every DAG id is on the page, the document has loaded and the text
                # stopped changing between two polls (the table has finished rendering).
                text, previous = "", None
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    result = cdp.call(
                        "Runtime.evaluate",
                        expression="document.readyState + '\\n' + document.body.innerText",
                        returnByValue=True,
                    )
                    state, _, text = str(result.get("result", {}).get("value", "")).partition("\n")
                    shown = all(dag_id in text for dag_id in expect)
                    if shown and state == "complete" and text == previous:
                        break
                    previous = text if shown else None
                    time.sleep(0.5)
                else:
                    raise ScreenshotError(
                        f"the DAG list never showed {expect}; the page said: {text[:300]!r}"
                    )
                shot = cdp.call("Page.captureScreenshot", format="png")
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(base64.b64decode(shot["data"]))
                return text
            finally:
                cdp.close()
        finally:
            _stop_group(browser)


def _stop_group(browser: subprocess.Popen[bytes]) -> None:
    """Stops Chromium and its helper processes (its own process group)."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(browser.pid, sig)
        except ProcessLookupError:
            return
        try:
            browser.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; give its helpers a moment to leave the group too.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(browser.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def main() -> int:
    """Screenshot of the running local Airflow (``make run``)."""
    from webtraffic.airflow_env import AIRFLOW_USER, LocalAirflow, ensure_password
    from webtraffic.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("airflow-dags.png"))
    args = parser.parse_args()
    settings = Settings.from_env()
    airflow = LocalAirflow(settings)
    try:
        screenshot_dags(
            airflow.url,
            AIRFLOW_USER,
            ensure_password(settings),
            args.out,
            ["streaming_supervisor", "platform_health"],
        )
    except (ScreenshotError, OSError) as exc:
        print(f"ui_screenshot: error: {exc}", file=sys.stderr)
        return 1
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
