"""The chain's answer for one address, as stored in ``ref.geo_cache`` and shown to users."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

GeoStatus = Literal["resolved", "non-routable", "pending", "invalid"]
"""``resolved``: geo fields known. ``non-routable``: private, loopback, reserved...; answered
locally. ``pending``: no resolver answered yet; retried after ``expires_at``. ``invalid``: not an
IP address (silver rejects those, so gold should never see it)."""

Origin = Literal["memory", "table", "offline", "ipinfo", "classifier"]
"""Where the chain found an answer: the in-process cache, the cache table, a resolver call, or the
local bogon classifier."""

SOURCE_OFFLINE = "dbip-city-lite"
SOURCE_IPINFO = "ipinfo"
SOURCE_CLASSIFIER = "bogon-classifier"

GEO_COLUMNS: tuple[str, ...] = (
    "country_code",
    "country_name",
    "region",
    "city",
    "latitude",
    "longitude",
    "geo_source",
    "geo_status",
    "geo_data_version",
)
"""The geo fields a (gold) row gets from the enrichment, in this order."""

CACHE_COLUMNS: tuple[str, ...] = (
    "ip",
    *GEO_COLUMNS,
    "detail",
    "attempts",
    "fetched_at",
    "expires_at",
)
"""Columns of ``ref.geo_cache``, in this order."""


@dataclass(frozen=True)
class GeoResult:
    """What the chain knows about one address.

    Attributes:
        ip: The address in canonical form (``ipaddress`` spelling; IPv4-mapped IPv6 as IPv4).
        country_code: ISO 3166-1 alpha-2 code.
        country_name: English short name of the country.
        region: State / province / region.
        city: City.
        latitude: Latitude in degrees.
        longitude: Longitude in degrees.
        geo_source: Who answered: ``dbip-city-lite``, ``ipinfo`` or ``bogon-classifier``.
        geo_status: ``resolved``, ``non-routable``, ``pending`` or ``invalid``.
        geo_data_version: Data version, e.g. ``dbip-city-lite 2026-06-05`` or ``ipinfo 2026-12-04``.
        detail: Why: the bogon class (``private``...), the last resolver error, or the fallback
            reason.
        attempts: Resolver calls for this address that did not get an answer from the primary
            resolver (0 once it answered).
        fetched_at: When the answer was produced (UTC).
        expires_at: When it must be asked again (UTC); for ``pending`` entries the retry time.
        origin: Where the chain found it this time (not stored in the table).
    """

    ip: str
    country_code: str | None = None
    country_name: str | None = None
    region: str | None = None
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    geo_source: str | None = None
    geo_status: GeoStatus = "pending"
    geo_data_version: str | None = None
    detail: str | None = None
    attempts: int = 0
    fetched_at: datetime | None = None
    expires_at: datetime | None = None
    origin: Origin | None = None

    def with_origin(self, origin: Origin) -> GeoResult:
        """Returns a copy that records where the chain found it."""
        return dataclasses.replace(self, origin=origin)

    def is_fresh(self, now: datetime) -> bool:
        """Tells whether the entry may still be served at ``now`` (no expiry means forever)."""
        return self.expires_at is None or now < self.expires_at

    def cache_row(self) -> tuple[Any, ...]:
        """Returns the row for ``ref.geo_cache`` in :data:`CACHE_COLUMNS` order."""
        return tuple(getattr(self, name) for name in CACHE_COLUMNS)

    def geo_row(self) -> tuple[Any, ...]:
        """Returns ``ip`` and the :data:`GEO_COLUMNS`, the shape joined onto events."""
        return (self.ip, *(getattr(self, name) for name in GEO_COLUMNS))

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict (timestamps as ISO 8601)."""
        data = dataclasses.asdict(self)
        for key in ("fetched_at", "expires_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data

    @classmethod
    def from_cache_row(cls, row: dict[str, Any]) -> GeoResult:
        """Builds a result from a ``ref.geo_cache`` row (a dict keyed by column name)."""
        return cls(**{name: row.get(name) for name in CACHE_COLUMNS})
