"""The ipinfo.io client: batch endpoint, timeouts, retries honouring Retry-After, circuit breaker.

It is called once per micro-batch with the batch's cache misses (never per row, never inside a
Spark task). A call never takes longer than the configured budget: when ipinfo is slow, rate
limited or down, it returns what it got and reports the rest as failed, and the chain answers
those from the offline database or marks them ``pending``. The token is sent in the
``Authorization`` header only; it is never logged, never part of a URL and never in an error.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from webtraffic.geo.breaker import CircuitBreaker
from webtraffic.geo.countries import country_name
from webtraffic.geo.model import SOURCE_IPINFO, GeoResult
from webtraffic.settings import GeoSettings, Secret

log = logging.getLogger(__name__)

MAX_BATCH = 1000
"""ipinfo's limit of addresses per ``POST /batch``."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class BatchOutcome:
    """What one :meth:`IpinfoClient.lookup_batch` call got.

    Attributes:
        answers: Raw ipinfo records keyed by the address string sent.
        failed: Addresses without an answer, with the reason.
        requests: HTTP requests made (retries included).
    """

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    requests: int = 0


class _GiveUpError(Exception):
    """A request failed for good (reason in the message, never containing the token)."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parses a ``Retry-After`` header (seconds or an HTTP date) into seconds from now.

    Args:
        value: The header value.
        now: Current time as a UNIX timestamp (for tests); ``time.time()`` when omitted.

    Returns:
        Seconds to wait (0 or more), or None when absent or unparseable.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def result_from_ipinfo(ip: str, record: dict[str, Any], now: datetime, ttl: float) -> GeoResult:
    """Turns an ipinfo record into a result (``bogon: true`` -> ``non-routable``).

    Args:
        ip: Canonical address.
        record: The ipinfo JSON object for it.
        now: Answer time (UTC).
        ttl: Lifetime of the answer in seconds.
    """
    expires = now + timedelta(seconds=ttl)
    version = f"{SOURCE_IPINFO} {now.date().isoformat()}"
    if record.get("bogon"):
        return GeoResult(
            ip=ip,
            geo_source=SOURCE_IPINFO,
            geo_status="non-routable",
            geo_data_version=version,
            detail="bogon (ipinfo)",
            fetched_at=now,
            expires_at=expires,
        )
    latitude = longitude = None
    loc = record.get("loc")
    if isinstance(loc, str) and "," in loc:
        try:
            latitude, longitude = (float(part) for part in loc.split(",", 1))
        except ValueError:
            latitude = longitude = None
    code = (record.get("country") or "").upper() or None
    return GeoResult(
        ip=ip,
        country_code=code,
        country_name=country_name(code),
        region=record.get("region") or None,
        city=record.get("city") or None,
        latitude=latitude,
        longitude=longitude,
        geo_source=SOURCE_IPINFO,
        geo_status="resolved" if code else "pending",
        geo_data_version=version,
        detail=None if code else "ipinfo returned no country",
        fetched_at=now,
        expires_at=expires,
    )


class IpinfoClient:
    """A thread-safe ipinfo.io client with retries, a time budget and a circuit breaker."""

    def __init__(
        self,
        base_url: str,
        token: Secret,
        *,
        timeout_seconds: float = 2.0,
        batch_timeout_seconds: float = 5.0,
        batch_size: int = MAX_BATCH,
        retries: int = 3,
        backoff_seconds: float = 0.5,
        backoff_max_seconds: float = 8.0,
        budget_seconds: float = 20.0,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Creates the client (no request is made yet).

        Args:
            base_url: ``https://ipinfo.io`` or a local double.
            token: The API token.
            timeout_seconds: Timeout of one ``GET /{ip}`` (connect and read).
            batch_timeout_seconds: Timeout of one ``POST /batch``.
            batch_size: Addresses per batch request; clipped to 1,000.
            retries: Retries of one request on 429, 5xx, timeouts and connection errors.
            backoff_seconds: First retry delay (doubles each retry, with +-20 % jitter).
            backoff_max_seconds: Longest wait; a longer ``Retry-After`` trips the breaker instead.
            budget_seconds: Most time one public call may take in total.
            breaker: Circuit breaker shared by all calls (a 3-failure, 60 s one by default).
            sleep: Sleep function (tests may record instead of sleeping).
            clock: Monotonic clock.
        """
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout_seconds = timeout_seconds
        self.batch_timeout_seconds = batch_timeout_seconds
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.budget_seconds = budget_seconds
        self.breaker = breaker or CircuitBreaker(3, 60.0)
        self._sleep = sleep
        self._clock = clock
        self._local = threading.local()
        self.requests_made = 0
        self._count_lock = threading.Lock()

    @classmethod
    def from_settings(cls, geo: GeoSettings) -> IpinfoClient:
        """Builds the client from the geo settings (the token must be set)."""
        if not geo.ipinfo_token:
            raise ValueError("the ipinfo client needs WEBTRAFFIC_IPINFO_TOKEN")
        return cls(
            geo.ipinfo_url,
            geo.ipinfo_token,
            timeout_seconds=geo.ipinfo_timeout_seconds,
            batch_timeout_seconds=geo.ipinfo_batch_timeout_seconds,
            batch_size=geo.ipinfo_batch_size,
            retries=geo.ipinfo_retries,
            backoff_seconds=geo.ipinfo_backoff_seconds,
            backoff_max_seconds=geo.ipinfo_backoff_max_seconds,
            budget_seconds=geo.ipinfo_budget_seconds,
            breaker=CircuitBreaker(geo.breaker_failures, geo.breaker_reset_seconds),
        )

    def __repr__(self) -> str:
        return f"IpinfoClient({self.base_url!r}, token={self._token!r})"

    # --- HTTP ---------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(
                {
                    "Authorization": f"Bearer {self._token.get()}",
                    "Accept": "application/json",
                    "User-Agent": "webtraffic-geo/0.1",
                }
            )
            self._local.session = session
        return session

    def _backoff(self, attempt: int) -> float:
        delay = self.backoff_seconds * (2**attempt)
        return min(self.backoff_max_seconds, delay * random.uniform(0.8, 1.2))

    def _request(
        self, method: str, path: str, timeout: float, deadline: float, payload: Any = None
    ) -> Any:
        """One logical request with retries; returns the decoded JSON or raises _GiveUpError."""
        attempt = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise _GiveUpError("time budget spent")
            wait: float | None = None
            try:
                with self._count_lock:
                    self.requests_made += 1
                response = self._session().request(
                    method,
                    f"{self.base_url}{path}",
                    json=payload,
                    timeout=min(timeout, remaining),
                )
            except requests.Timeout:
                reason = "timeout"
            except requests.ConnectionError:
                reason = "connection error"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise _GiveUpError("answer is not JSON") from None
                if status in (401, 403):
                    raise _GiveUpError(f"HTTP {status}: token rejected")
                if status not in RETRY_STATUSES:
                    raise _GiveUpError(f"HTTP {status}")
                reason = f"HTTP {status}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None:
                    if retry_after > self.backoff_max_seconds:
                        # Quota exhausted for a while: stop calling until then.
                        self.breaker.trip(retry_after)
                        raise _GiveUpError(f"{reason}, Retry-After {retry_after:g} s")
                    wait = retry_after
            if attempt >= self.retries:
                raise _GiveUpError(f"{reason} after {attempt + 1} attempts")
            wait = self._backoff(attempt) if wait is None else wait
            if self._clock() + wait >= deadline:
                raise _GiveUpError(f"{reason}; next retry would exceed the time budget")
            log.info("ipinfo %s %s: %s, retry in %.2f s", method, path.split("/")[1], reason, wait)
            self._sleep(wait)
            attempt += 1

    def _call(
        self, method: str, path: str, timeout: float, deadline: float, payload: Any = None
    ) -> Any:
        """A request guarded by the breaker; raises _GiveUpError when refused or failed."""
        if not self.breaker.allow():
            raise _GiveUpError(
                f"circuit breaker open (next trial in {self.breaker.seconds_until_trial():.0f} s)"
            )
        try:
            data = self._request(method, path, timeout, deadline, payload)
        except _GiveUpError:
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return data

    # --- API ----------------------------------------------------------------------------------

    def lookup(self, ip: str) -> dict[str, Any]:
        """``GET /{ip}``: the record of one address.

        Raises:
            IpinfoUnavailableError: No answer (breaker open, errors, budget spent).
        """
        deadline = self._clock() + self.budget_seconds
        try:
            data = self._call("GET", f"/{ip}", self.timeout_seconds, deadline)
        except _GiveUpError as exc:
            raise IpinfoUnavailableError(f"ipinfo: no answer for {ip}: {exc}") from None
        if not isinstance(data, dict):
            raise IpinfoUnavailableError(f"ipinfo: unexpected answer for {ip}")
        return data

    def lookup_batch(self, ips: Sequence[str]) -> BatchOutcome:
        """``POST /batch`` in chunks of at most 1,000 addresses, within the time budget.

        Args:
            ips: Distinct addresses (public ones; the chain never sends bogons).

        Returns:
            Answers keyed by the strings sent, and the failed addresses with reasons.
        """
        outcome = BatchOutcome()
        before = self.requests_made
        deadline = self._clock() + self.budget_seconds
        unique = list(dict.fromkeys(ips))
        for start in range(0, len(unique), self.batch_size):
            chunk = unique[start : start + self.batch_size]
            try:
                data = self._call("POST", "/batch", self.batch_timeout_seconds, deadline, chunk)
            except _GiveUpError as exc:
                for ip in chunk:
                    outcome.failed[ip] = str(exc)
                continue
            if not isinstance(data, dict):
                for ip in chunk:
                    outcome.failed[ip] = "unexpected batch answer"
                continue
            for ip in chunk:
                record = data.get(ip)
                if isinstance(record, dict) and "error" not in record:
                    outcome.answers[ip] = record
                else:
                    outcome.failed[ip] = "missing from the batch answer"
        outcome.requests = self.requests_made - before
        if outcome.failed:
            log.warning(
                "ipinfo answered %d of %d addresses (%d requests); e.g. %s",
                len(outcome.answers),
                len(unique),
                outcome.requests,
                next(iter(outcome.failed.values())),
            )
        return outcome

    def close(self) -> None:
        """Closes this thread's HTTP session."""
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None


class IpinfoUnavailableError(Exception):
    """ipinfo gave no answer (the chain falls back; this never reaches an operator directly)."""
