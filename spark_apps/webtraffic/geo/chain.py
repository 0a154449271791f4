"""The provider chain: in-process TTL cache -> ``ref.geo_cache`` -> one resolver call for misses.

Non-routable addresses are answered by the local classifier and go nowhere. Public misses are
resolved together: by the offline database, or by ipinfo (one ``POST /batch`` per 1,000) with the
offline database answering what ipinfo could not (such a fallback entry expires at the retry
time, so ipinfo is asked again later). Without any answer an address is ``pending`` with a retry
time that doubles with each failed attempt, so a failing address is not asked about every batch.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from cachetools import TTLCache

from webtraffic.errors import WebtrafficError
from webtraffic.geo.bogons import InvalidIPError, classify, parse_ip
from webtraffic.geo.cache_table import GeoCacheStore
from webtraffic.geo.ipinfo import IpinfoClient, result_from_ipinfo
from webtraffic.geo.model import SOURCE_CLASSIFIER, GeoResult
from webtraffic.geo.offline import OfflineGeoDB
from webtraffic.settings import GeoSettings

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 24 * 3600.0
"""The retry time of a pending entry doubles per failed attempt up to one day."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class GeoChain:
    """Answers addresses cheapest-first and remembers the answers; thread-safe.

    Attributes:
        stats: Counters: ``memory``, ``table``, ``offline``, ``ipinfo``, ``classifier``,
            ``invalid``, ``pending``, ``fallback`` (answers by origin and outcome).
    """

    def __init__(
        self,
        geo: GeoSettings,
        *,
        store: GeoCacheStore | None = None,
        offline: OfflineGeoDB | None = None,
        ipinfo: IpinfoClient | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """Builds a chain from its parts (see :meth:`from_settings` for the usual way).

        Args:
            geo: Geo settings (TTLs, cache size, provider, fallback).
            store: The cache table; None for memory-only use.
            offline: The offline database (required for the offline provider and fallback).
            ipinfo: The ipinfo client (required for the ipinfo provider).
            clock: Current UTC time (injectable for tests).

        Raises:
            WebtrafficError: The configured provider lacks its resolver.
        """
        self.geo = geo
        self.store = store
        self.offline = offline
        self.provider = geo.effective_provider
        self.ipinfo = ipinfo if self.provider == "ipinfo" else None
        if self.provider == "ipinfo" and ipinfo is None:
            raise WebtrafficError("the ipinfo geo provider needs an ipinfo client (a token)")
        if self.provider == "offline" and offline is None:
            raise WebtrafficError("the offline geo provider needs the offline database")
        self._clock = clock
        # The memory cache ages on the chain's clock, like every other expiry here.
        self._memory: TTLCache[str, GeoResult] = TTLCache(
            maxsize=geo.memory_cache_size,
            ttl=geo.memory_cache_ttl_seconds,
            timer=lambda: self._clock().timestamp(),
        )
        self._lock = threading.RLock()
        self.stats: Counter[str] = Counter()

    @classmethod
    def from_settings(
        cls, geo: GeoSettings, store: GeoCacheStore | None = None, *, require_offline: bool = False
    ) -> GeoChain:
        """Builds the chain the settings describe.

        Args:
            geo: Geo settings.
            store: The cache table store, if any.
            require_offline: Fail when the offline database is missing even if only the
                fallback would use it.

        Raises:
            WebtrafficError: A required resolver is missing (e.g. the offline files).
        """
        provider = geo.effective_provider
        offline: OfflineGeoDB | None = None
        if provider == "offline" or require_offline:
            offline = OfflineGeoDB(geo.offline_dir)
        elif geo.offline_fallback:
            try:
                offline = OfflineGeoDB(geo.offline_dir)
            except WebtrafficError as exc:
                log.warning("no offline geo fallback: %s", exc)
        ipinfo = IpinfoClient.from_settings(geo) if provider == "ipinfo" else None
        return cls(geo, store=store, offline=offline, ipinfo=ipinfo)

    # --- lookups ------------------------------------------------------------------------------

    def lookup(self, text: str) -> GeoResult:
        """Answers one address (see :meth:`lookup_many`)."""
        return self.lookup_many([text])[text]

    def lookup_many(self, texts: Iterable[str]) -> dict[str, GeoResult]:
        """Answers addresses cheapest-first, storing what the resolver found.

        Args:
            texts: Addresses as they arrived (duplicates, any spelling, invalid ones allowed).

        Returns:
            One result per distinct input string; its ``ip`` is the canonical spelling and its
            ``origin`` says where the answer came from.
        """
        now = self._clock()
        results: dict[str, GeoResult] = {}
        canonical: dict[str, str] = {}
        answers: dict[str, GeoResult] = {}
        need: dict[str, object] = {}  # canonical ip -> parsed address, insertion-ordered
        for text in dict.fromkeys(texts):
            try:
                address = parse_ip(text)
            except InvalidIPError:
                results[text] = GeoResult(
                    ip=str(text),
                    geo_status="invalid",
                    detail="not an IP address",
                    fetched_at=now,
                    origin="classifier",
                )
                self.stats["invalid"] += 1
                continue
            ip = str(address)
            canonical[text] = ip
            if ip in answers or ip in need:
                continue
            kind = classify(address)
            if kind is not None:
                answers[ip] = GeoResult(
                    ip=ip,
                    geo_source=SOURCE_CLASSIFIER,
                    geo_status="non-routable",
                    detail=kind,
                    fetched_at=now,
                    origin="classifier",
                )
                self.stats["classifier"] += 1
            else:
                need[ip] = address

        with self._lock:
            for ip in list(need):
                cached = self._memory.get(ip)
                if cached is not None and cached.is_fresh(now):
                    answers[ip] = cached.with_origin("memory")
                    self.stats["memory"] += 1
                    del need[ip]

        stale: dict[str, GeoResult] = {}
        if need and self.store is not None:
            for ip, entry in self.store.get_many(list(need)).items():
                if ip not in need:
                    continue
                if entry.is_fresh(now):
                    answers[ip] = entry.with_origin("table")
                    self._remember(entry)
                    self.stats["table"] += 1
                    del need[ip]
                else:
                    stale[ip] = entry

        if need:
            fresh = self._resolve(list(need), now, stale)
            for result in fresh:
                answers[result.ip] = result
                self._remember(result)
            if self.store is not None:
                self.store.put_many([dataclasses.replace(r, origin=None) for r in fresh])

        for text, ip in canonical.items():
            results[text] = answers[ip]
        return results

    def refresh(self, ips: Iterable[str]) -> list[GeoResult]:
        """Resolves addresses again whatever the caches hold and stores the answers.

        Args:
            ips: Addresses (canonical or not; invalid and non-routable ones are skipped).

        Returns:
            The new answers.
        """
        now = self._clock()
        targets: list[str] = []
        for text in dict.fromkeys(ips):
            try:
                address = parse_ip(text)
            except InvalidIPError:
                continue
            if classify(address) is None:
                targets.append(str(address))
        if not targets:
            return []
        previous = self.store.get_many(targets) if self.store is not None else {}
        fresh = self._resolve(targets, now, previous)
        for result in fresh:
            self._remember(result)
        if self.store is not None:
            self.store.put_many([dataclasses.replace(r, origin=None) for r in fresh])
        return fresh

    def _remember(self, result: GeoResult) -> None:
        with self._lock:
            self._memory[result.ip] = dataclasses.replace(result, origin=None)

    def memory_size(self) -> int:
        """Entries in the in-process cache."""
        with self._lock:
            return len(self._memory)

    # --- resolvers ----------------------------------------------------------------------------

    def _retry_delay(self, attempts: int) -> timedelta:
        seconds = self.geo.retry_seconds * (2 ** max(0, attempts - 1))
        return timedelta(seconds=min(max(self.geo.retry_seconds, MAX_RETRY_SECONDS), seconds))

    def _resolve(
        self, ips: list[str], now: datetime, previous: dict[str, GeoResult]
    ) -> list[GeoResult]:
        """One resolver call for the public addresses ``ips``."""
        ttl = self.geo.ttl_seconds
        if self.provider == "offline":
            assert self.offline is not None
            out = []
            for ip in ips:
                result = self.offline.lookup(parse_ip(ip), now, ttl)
                if result.geo_status == "pending":
                    attempts = (previous[ip].attempts if ip in previous else 0) + 1
                    result = dataclasses.replace(
                        result, attempts=attempts, expires_at=now + self._retry_delay(attempts)
                    )
                    self.stats["pending"] += 1
                out.append(result.with_origin("offline"))
                self.stats["offline"] += 1
            return out

        assert self.ipinfo is not None
        outcome = self.ipinfo.lookup_batch(ips)
        self.stats["ipinfo_requests"] += outcome.requests
        out = []
        for ip in ips:
            record = outcome.answers.get(ip)
            if record is not None:
                out.append(result_from_ipinfo(ip, record, now, ttl).with_origin("ipinfo"))
                self.stats["ipinfo"] += 1
                continue
            reason = outcome.failed.get(ip, "no answer")
            attempts = (previous[ip].attempts if ip in previous else 0) + 1
            retry_at = now + self._retry_delay(attempts)
            if self.offline is not None and self.geo.offline_fallback:
                fallback = self.offline.lookup(parse_ip(ip), now, ttl)
                out.append(
                    dataclasses.replace(
                        fallback,
                        detail=f"ipinfo failed ({reason}); offline fallback",
                        attempts=attempts,
                        expires_at=retry_at,
                        origin="offline",
                    )
                )
                self.stats["fallback"] += 1
            else:
                out.append(
                    GeoResult(
                        ip=ip,
                        geo_status="pending",
                        detail=f"ipinfo failed: {reason}",
                        attempts=attempts,
                        fetched_at=now,
                        expires_at=retry_at,
                        origin="ipinfo",
                    )
                )
                self.stats["pending"] += 1
        return out

    def close(self) -> None:
        """Releases the offline database and HTTP session."""
        if self.offline is not None:
            self.offline.close()
        if self.ipinfo is not None:
            self.ipinfo.close()
