"""Bulk refresh of ``ref.geo_cache``: the work of the ``geo_cache_refresh`` DAG."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from webtraffic.errors import WebtrafficError
from webtraffic.geo.chain import GeoChain


@dataclass
class RefreshReport:
    """What one refresh did.

    Attributes:
        due: Entries that had expired or whose retry time had come.
        refreshed: Addresses resolved again.
        new: Addresses from ``also_ips`` the cache lacked (now resolved).
        by_status: Outcomes of the refreshed and new addresses by ``geo_status``.
        by_source: Outcomes by ``geo_source``.
    """

    due: int = 0
    refreshed: int = 0
    new: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)


def refresh_geo_cache(
    chain: GeoChain,
    *,
    also_ips: Iterable[str] = (),
    limit: int = 100_000,
    now: datetime | None = None,
) -> RefreshReport:
    """Re-resolves expired and pending entries in bulk and resolves addresses the cache lacks.

    Args:
        chain: A chain with a store (the cache table).
        also_ips: Addresses seen elsewhere (e.g. in silver) that should be in the cache;
            only those it lacks or holds expired are resolved.
        limit: Most expired entries refreshed in one run (oldest expiry first).
        now: Refresh time (UTC); now when omitted.

    Returns:
        Counts of what was done.

    Raises:
        WebtrafficError: The chain has no store.
    """
    if chain.store is None:
        raise WebtrafficError("refresh_geo_cache needs a chain with the cache table")
    when = now or datetime.now(UTC)
    due = chain.store.due_for_refresh(when, limit)
    report = RefreshReport(due=len(due))
    outcomes = chain.refresh(due)
    report.refreshed = len(outcomes)
    extra = list(dict.fromkeys(also_ips))
    if extra:
        answers = chain.lookup_many(extra)
        # Only the addresses a resolver was asked about (not those the caches still held).
        new = {r.ip: r for r in answers.values() if r.origin in ("offline", "ipinfo")}
        report.new = len(new)
        outcomes += list(new.values())
    report.by_status = dict(Counter(r.geo_status for r in outcomes))
    report.by_source = dict(Counter(r.geo_source or "none" for r in outcomes))
    return report
