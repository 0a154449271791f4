"""A local Databricks Jobs API 2.2 double: a real HTTP server on 127.0.0.1, ephemeral port.

It implements the endpoints the provider's ``DatabricksHook`` calls, with the request and
response shapes of the Jobs API: ``jobs/create``, ``jobs/reset``, ``jobs/list`` (paginated with
``next_page_token``), ``jobs/run-now``, ``jobs/runs/submit``, ``jobs/runs/get``,
``jobs/runs/cancel``, and the SQL Statement Execution API (``2.0/sql/statements``) the
supervisor reads ``ops.stream_progress`` with. Requests need ``Authorization: Bearer <token>``.

Runs start ``PENDING``, become ``RUNNING`` on the next ``runs/get``, and a cancelled run passes
through ``TERMINATING`` to ``TERMINATED``/``CANCELED``. Tests steer runs with
:meth:`JobsApiDouble.finish_run` and inject failures with :meth:`fail_next`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    """One request the double received."""

    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    authorization: str | None


@dataclass
class _Run:
    run_id: int
    job_id: int | None
    run_name: str
    tasks: list[dict[str, Any]]
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = "Waiting for cluster"
    start_time: int = field(default_factory=lambda: int(time.time() * 1000))


class JobsApiDouble:
    """The server and its state. Use as a context manager.

    Args:
        token: The bearer token the server accepts.
        page_size_cap: Largest page ``jobs/list`` returns (small, to exercise pagination).
    """

    def __init__(self, token: str, page_size_cap: int = 2) -> None:
        self.token = token
        self.page_size_cap = page_size_cap
        self.requests: list[Request] = []
        self.jobs: dict[int, dict[str, Any]] = {}
        self.runs: dict[int, _Run] = {}
        self.statement_rows: list[list[Any]] = []
        self.statements: list[str] = []
        self._ids = itertools.count(1001)
        self._failures: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The ephemeral port it listens on."""
        return int(self._server.server_address[1])

    def __enter__(self) -> JobsApiDouble:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- steering --------------------------------------------------------------------------

    def fail_next(self, count: int, status: int, path_suffix: str = "") -> None:
        """The next ``count`` requests (to paths ending with ``path_suffix``) get ``status``."""
        with self._lock:
            self._failures.extend([(status, path_suffix)] * count)

    def finish_run(self, run_id: int, result_state: str, message: str = "") -> None:
        """Ends a run: ``TERMINATED`` with ``result_state`` (SUCCESS, FAILED, ...)."""
        with self._lock:
            run = self.runs[run_id]
            run.life_cycle_state = "TERMINATED"
            run.result_state = result_state
            run.state_message = message

    def set_life_cycle(self, run_id: int, life_cycle_state: str, message: str = "") -> None:
        """Puts a run in any life cycle state (e.g. INTERNAL_ERROR)."""
        with self._lock:
            self.runs[run_id].life_cycle_state = life_cycle_state
            self.runs[run_id].state_message = message

    def calls(self, method: str, endpoint: str) -> list[Request]:
        """The requests to ``/api/<endpoint>`` with ``method``."""
        return [r for r in self.requests if r.method == method and r.path == f"/api/{endpoint}"]

    # --- endpoints -------------------------------------------------------------------------

    def _run_json(self, run: _Run) -> dict[str, Any]:
        state: dict[str, Any] = {
            "life_cycle_state": run.life_cycle_state,
            "state_message": run.state_message,
            "user_cancelled_or_timedout": False,
        }
        if run.result_state:
            state["result_state"] = run.result_state
        return {
            "run_id": run.run_id,
            "job_id": run.job_id,
            "run_name": run.run_name,
            "number_in_job": run.run_id,
            "state": state,
            "start_time": run.start_time,
            "run_page_url": f"http://127.0.0.1:{self.port}/#job/{run.job_id}/run/{run.run_id}",
            "run_type": "JOB_RUN" if run.job_id else "SUBMIT_RUN",
            "tasks": [
                {"run_id": run.run_id * 10 + i, "task_key": t.get("task_key"), "state": state}
                for i, t in enumerate(run.tasks)
            ],
        }

    def _dispatch(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]):
        ep = path.removeprefix("/api/")
        if (method, ep) == ("POST", "2.2/jobs/create"):
            if "name" not in body or "tasks" not in body:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "name, tasks"}
            job_id = next(self._ids)
            self.jobs[job_id] = {"job_id": job_id, "settings": body, "created_time": 1}
            return 200, {"job_id": job_id}
        if (method, ep) == ("POST", "2.2/jobs/reset"):
            job_id = int(body["job_id"])
            if job_id not in self.jobs:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "no such job"}
            self.jobs[job_id]["settings"] = body["new_settings"]
            return 200, {}
        if (method, ep) == ("GET", "2.2/jobs/list"):
            jobs = sorted(self.jobs.values(), key=lambda j: j["job_id"])
            if query.get("name"):
                jobs = [j for j in jobs if j["settings"]["name"] == query["name"]]
            start = int(query.get("page_token") or 0)
            limit = min(int(query.get("limit", 25)), self.page_size_cap)
            page = jobs[start : start + limit]
            answer: dict[str, Any] = {"jobs": page} if page else {}
            if start + limit < len(jobs):
                answer["next_page_token"] = str(start + limit)
            return 200, answer
        if (method, ep) == ("POST", "2.2/jobs/run-now"):
            job = self.jobs.get(int(body["job_id"]))
            if job is None:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "no such job"}
            run = _Run(
                next(self._ids), job["job_id"], job["settings"]["name"], job["settings"]["tasks"]
            )
            self.runs[run.run_id] = run
            return 200, {"run_id": run.run_id, "number_in_job": run.run_id}
        if (method, ep) == ("POST", "2.2/jobs/runs/submit"):
            if not body.get("tasks"):
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "tasks"}
            run = _Run(next(self._ids), None, body.get("run_name", ""), body["tasks"])
            self.runs[run.run_id] = run
            return 200, {"run_id": run.run_id}
        if (method, ep) == ("GET", "2.2/jobs/runs/get"):
            run = self.runs.get(int(query["run_id"]))
            if run is None:
                return 400, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such run"}
            answer = self._run_json(run)
            if run.life_cycle_state == "PENDING":
                run.life_cycle_state, run.state_message = "RUNNING", ""
            elif run.life_cycle_state == "TERMINATING":
                run.life_cycle_state, run.result_state = "TERMINATED", "CANCELED"
            return 200, answer
        if (method, ep) == ("POST", "2.2/jobs/runs/cancel"):
            run = self.runs.get(int(body["run_id"]))
            if run is None:
                return 400, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such run"}
            if run.life_cycle_state not in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"):
                run.life_cycle_state, run.state_message = "TERMINATING", "Run cancelled"
            return 200, {}
        if (method, ep) == ("POST", "2.0/sql/statements"):
            self.statements.append(body["statement"])
            return 200, {
                "statement_id": f"st-{len(self.statements)}",
                "status": {"state": "SUCCEEDED"},
                "manifest": {"format": "JSON_ARRAY", "total_row_count": len(self.statement_rows)},
                "result": {"data_array": self.statement_rows},
            }
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"{method} {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                auth = self.headers.get("Authorization")
                with double._lock:
                    double.requests.append(Request(method, url.path, query, body or None, auth))
                    failure = next((f for f in double._failures if url.path.endswith(f[1])), None)
                    if failure is not None:
                        double._failures.remove(failure)
                        status, answer = failure[0], {"error_code": "TEMPORARILY_UNAVAILABLE"}
                    elif auth != f"Bearer {double.token}":
                        status, answer = 401, {"error_code": "UNAUTHENTICATED"}
                    else:
                        status, answer = double._dispatch(method, url.path, query, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler
