"""Shared bits of the geo tests: the offline database of the real state folder, test settings."""

from __future__ import annotations

import dataclasses
import random
import secrets
from functools import cache

import pytest

from tests.conftest import TEST_SETTINGS
from webtraffic.geo.bogons import classify, parse_ip
from webtraffic.geo.offline import IPV4_FILE, OfflineGeoDB
from webtraffic.settings import GeoSettings, Secret

# conftest points the test stack at the database `make setup` fetched into <state>/geo.
GEO_DB_DIR = TEST_SETTINGS.geo.offline_dir
TOKEN = secrets.token_urlsafe(16)  # generated per run, never a literal


@cache
def offline_db() -> OfflineGeoDB:
    """The real DB-IP database; a clear failure (not a skip) when `make setup` has not run."""
    if not (GEO_DB_DIR / IPV4_FILE).is_file():
        pytest.fail(f"offline geo database missing in {GEO_DB_DIR}: run `make setup`")
    return OfflineGeoDB(GEO_DB_DIR)


def geo_settings(**overrides: object) -> GeoSettings:
    """Fast test settings: small backoffs and timeouts, offline DB of the real state folder."""
    values: dict[str, object] = {
        "offline_dir": GEO_DB_DIR,
        "provider": "offline",
        "ipinfo_timeout_seconds": 1.0,
        "ipinfo_batch_timeout_seconds": 2.0,
        "ipinfo_retries": 2,
        "ipinfo_backoff_seconds": 0.02,
        "ipinfo_backoff_max_seconds": 0.5,
        "ipinfo_budget_seconds": 5.0,
        "breaker_failures": 3,
        "breaker_reset_seconds": 30.0,
    }
    values.update(overrides)
    if values.get("provider") == "ipinfo" and "ipinfo_token" not in values:
        values["ipinfo_token"] = Secret(TOKEN)
    return dataclasses.replace(TEST_SETTINGS.geo, **values)  # type: ignore[arg-type]


def public_ips(count: int, seed: int = 1, v6_share: float = 0.1) -> list[str]:
    """Distinct public addresses that DB-IP knows (IPv4 and some IPv6), deterministic."""
    rng = random.Random(seed)
    db = offline_db()
    found: dict[str, None] = {}
    while len(found) < count:
        if rng.random() < v6_share:
            groups = [rng.randrange(1 << 16) for _ in range(3)]
            text = "2a0{:x}:{:x}:{:x}::{:x}".format(rng.randrange(16), *groups)
        else:
            text = ".".join(str(rng.randrange(256)) for _ in range(4))
        address = parse_ip(text)
        if classify(address) is None and (db.record(address) or {}).get("country_code"):
            found[str(address)] = None
    return list(found)
