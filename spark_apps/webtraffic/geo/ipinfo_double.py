"""A local stand-in for the ipinfo.io API, for tests and benchmarks (a real HTTP server).

It listens on 127.0.0.1 on an ephemeral port and speaks ipinfo's shape: ``GET /{ip}``,
``POST /batch`` (a JSON array of at most 1,000 address strings; the answer is an object keyed by
those strings), ``Authorization: Bearer <token>`` (403 on a wrong one), ``{"bogon": true}`` for
non-routable addresses. Answers come from the offline DB-IP database, so they are plausible.
Misbehaviour is configurable while it runs: latency, a status for every request (e.g. 429 with
``Retry-After``, 500), a random error rate, failing the next N requests, dropping a share of the
addresses from batch answers. It counts the requests it receives.

Usage::

    with IpinfoDouble(offline_db, token="t", latency=0.2) as double:
        client = IpinfoClient(double.base_url, Secret("t"))
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from webtraffic.geo.bogons import InvalidIPError, classify, parse_ip
from webtraffic.geo.offline import OfflineGeoDB

MAX_BATCH = 1000


@dataclass
class RequestRecord:
    """One request the double received."""

    method: str
    path: str
    items: int
    status: int


class IpinfoDouble:
    """The ipinfo double; start with ``start()`` or a ``with`` block, stop with ``stop()``."""

    def __init__(
        self,
        offline_db: OfflineGeoDB,
        token: str = "double-token",
        *,
        latency: float = 0.0,
        fail_status: int | None = None,
        retry_after: str | None = None,
        error_rate: float = 0.0,
        partial_failure_rate: float = 0.0,
        seed: int = 7,
    ) -> None:
        """Configures the double (all knobs may also be changed while it runs).

        Args:
            offline_db: Where answers come from.
            token: The only token accepted.
            latency: Seconds each request takes before it is answered.
            fail_status: Answer every request with this status (e.g. 429 or 500).
            retry_after: ``Retry-After`` header value sent with 429 and 503 answers.
            error_rate: Share of requests answered 500 at random.
            partial_failure_rate: Share of addresses left out of batch answers.
            seed: Seed of the random choices.
        """
        self.offline_db = offline_db
        self.token = token
        self.latency = latency
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.error_rate = error_rate
        self.partial_failure_rate = partial_failure_rate
        self.fail_next: list[int] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.records: list[RequestRecord] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on (after ``start``)."""
        if self._server is None:
            raise RuntimeError("the ipinfo double is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> IpinfoDouble:
        """Starts serving on 127.0.0.1 on an ephemeral port, in a daemon thread."""
        if self._server is not None:
            return self
        double = self

        class Handler(_Handler):
            owner = double

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.request_queue_size = 128
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="ipinfo-double", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and frees the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> IpinfoDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- counters -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forgets the recorded requests and clears every failure mode and the latency."""
        with self._lock:
            self.records.clear()
            self.fail_next.clear()
        self.latency = 0.0
        self.fail_status = None
        self.retry_after = None
        self.error_rate = 0.0
        self.partial_failure_rate = 0.0

    @property
    def request_count(self) -> int:
        """Requests received (every method and path)."""
        with self._lock:
            return len(self.records)

    @property
    def batch_requests(self) -> int:
        """``POST /batch`` requests received."""
        with self._lock:
            return sum(1 for r in self.records if r.method == "POST" and r.path == "/batch")

    @property
    def single_requests(self) -> int:
        """``GET /{ip}`` requests received."""
        with self._lock:
            return sum(1 for r in self.records if r.method == "GET")

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.records.append(record)

    def _forced_failure(self) -> int | None:
        with self._lock:
            if self.fail_next:
                return self.fail_next.pop(0)
            if self.fail_status is not None:
                return self.fail_status
            if self.error_rate and self._random.random() < self.error_rate:
                return 500
        return None

    def _drop(self) -> bool:
        with self._lock:
            return bool(self.partial_failure_rate) and (
                self._random.random() < self.partial_failure_rate
            )

    # --- answers ------------------------------------------------------------------------------

    def answer_for(self, text: str) -> tuple[int, dict[str, Any]]:
        """Returns the status and ipinfo record for one address string."""
        try:
            address = parse_ip(text)
        except InvalidIPError:
            return 404, {"error": {"title": "Wrong ip", "message": "Please provide a valid IP"}}
        ip = text.strip()
        if classify(address) is not None:
            return 200, {"ip": ip, "bogon": True}
        record = self.offline_db.record(address) or {}
        answer: dict[str, Any] = {"ip": ip}
        if record.get("city"):
            answer["city"] = record["city"]
        if record.get("state1"):
            answer["region"] = record["state1"]
        if record.get("country_code"):
            answer["country"] = record["country_code"]
        if record.get("latitude") not in (None, "") and record.get("longitude") not in (None, ""):
            answer["loc"] = f"{float(record['latitude']):.4f},{float(record['longitude']):.4f}"
        if record.get("postcode"):
            answer["postal"] = record["postcode"]
        if record.get("timezone"):
            answer["timezone"] = record["timezone"]
        return 200, answer


class _Handler(BaseHTTPRequestHandler):
    owner: IpinfoDouble
    protocol_version = "HTTP/1.1"
    server_version = "ipinfo-double/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silences the per-request stderr log."""

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.owner.token}"

    def _common(self, items: int) -> bool:
        """Latency, token and forced failures; True when the request was answered already."""
        owner = self.owner
        if owner.latency > 0:
            time.sleep(owner.latency)
        if not self._authorised():
            owner._record(RequestRecord(self.command, self._path(), items, 403))
            self._send(403, {"status": 403, "error": {"title": "Unknown token"}})
            return True
        status = owner._forced_failure()
        if status is not None:
            owner._record(RequestRecord(self.command, self._path(), items, status))
            headers = {}
            if status in (429, 503) and owner.retry_after is not None:
                headers["Retry-After"] = owner.retry_after
            self._send(
                status, {"status": status, "error": {"title": "forced by the double"}}, headers
            )
            return True
        return False

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        """``GET /{ip}`` (and ``GET /{ip}/json``)."""
        path = self._path().strip("/")
        if path.endswith("/json"):
            path = path[: -len("/json")]
        if self._common(1):
            return
        status, body = self.owner.answer_for(path)
        self.owner._record(RequestRecord("GET", self._path(), 1, status))
        self._send(status, body)

    def do_POST(self) -> None:
        """``POST /batch`` with a JSON array of address strings."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self._path().rstrip("/") != "/batch":
            self.owner._record(RequestRecord("POST", self._path(), 0, 404))
            self._send(404, {"error": {"title": "Wrong path"}})
            return
        try:
            items = json.loads(raw or b"null")
        except ValueError:
            items = None
        count = len(items) if isinstance(items, list) else 0
        if self._common(count):
            return
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            self.owner._record(RequestRecord("POST", "/batch", count, 400))
            self._send(400, {"error": {"title": "Bad request", "message": "expected a JSON array"}})
            return
        if count > MAX_BATCH:
            self.owner._record(RequestRecord("POST", "/batch", count, 400))
            self._send(
                400,
                {"error": {"title": "Too many IPs", "message": f"at most {MAX_BATCH} per batch"}},
            )
            return
        answer: dict[str, Any] = {}
        for item in items:
            if self.owner._drop():
                continue
            _, body = self.owner.answer_for(item)
            answer[item] = body
        self.owner._record(RequestRecord("POST", "/batch", count, 200))
        self._send(200, answer)
