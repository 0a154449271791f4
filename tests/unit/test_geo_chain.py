"""The provider chain: memory TTL cache, cache table (pyiceberg), resolvers, fallback, refresh."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.geo_helpers import geo_settings, offline_db, public_ips
from webtraffic.geo.cache_table import PyIcebergGeoCacheStore
from webtraffic.geo.chain import GeoChain
from webtraffic.geo.ipinfo import IpinfoClient
from webtraffic.geo.offline import OfflineGeoDB
from webtraffic.geo.refresh import refresh_geo_cache


class Clock:
    def __init__(self):
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> None:
        self.now += timedelta(**kwargs)


def ipinfo_chain(double, store=None, clock=None, **overrides) -> GeoChain:
    geo = geo_settings(provider="ipinfo", ipinfo_url=double.base_url, **overrides)
    offline = OfflineGeoDB(geo.offline_dir) if geo.offline_fallback else None
    return GeoChain(
        geo,
        store=store,
        offline=offline,
        ipinfo=IpinfoClient.from_settings(geo),
        clock=clock or Clock(),
    )


@pytest.fixture
def store(catalog):
    return PyIcebergGeoCacheStore(catalog, f"ref.geo_cache_ut_{uuid.uuid4().hex[:8]}")


def test_memory_cache_hit_miss_and_expiry(double):
    clock = Clock()
    chain = ipinfo_chain(double, clock=clock, ttl_seconds=3600.0)
    first = chain.lookup("8.8.8.8")
    assert first.origin == "ipinfo"
    assert double.batch_requests == 1
    again = chain.lookup_many(["8.8.8.8", " 8.8.8.8", "::ffff:8.8.8.8"])
    assert {r.origin for r in again.values()} == {"memory"}
    assert double.batch_requests == 1  # every spelling hits the same entry
    clock.advance(seconds=3601)  # the answer expired: asked again
    assert chain.lookup("8.8.8.8").origin == "ipinfo"
    assert double.batch_requests == 2


def test_memory_cache_ttl_and_size_bound(double):
    clock = Clock()
    chain = ipinfo_chain(double, clock=clock, memory_cache_ttl_seconds=0.2, memory_cache_size=10)
    ips = public_ips(30, seed=21)
    chain.lookup_many(ips)
    assert chain.memory_size() == 10  # bounded
    chain.lookup(ips[-1])
    assert double.batch_requests == 1  # still in memory
    clock.advance(seconds=0.25)
    assert chain.memory_size() == 0
    assert chain.lookup(ips[-1]).origin == "ipinfo"
    assert double.batch_requests == 2


def test_non_routable_and_invalid_never_reach_a_resolver(double):
    chain = ipinfo_chain(double)
    answers = chain.lookup_many(["10.0.0.1", "::1", "fe80::1", "bogus", "192.0.2.1"])
    assert double.request_count == 0
    assert answers["10.0.0.1"].geo_status == "non-routable"
    assert answers["10.0.0.1"].detail == "private"
    assert answers["fe80::1"].detail == "link-local"
    assert answers["bogus"].geo_status == "invalid"


def test_offline_answers_match_the_database(tmp_path):
    chain = GeoChain(geo_settings(), offline=offline_db())
    ips = public_ips(300, seed=22)
    answers = chain.lookup_many(ips)
    import ipaddress

    for ip in ips:
        record = offline_db().record(ipaddress.ip_address(ip))
        result = answers[ip]
        assert result.geo_status == "resolved"
        assert result.geo_source == "dbip-city-lite"
        assert result.country_code == record["country_code"]
        assert result.region == (record["state1"] or None)
        assert result.city == (record["city"] or None)
        assert result.latitude == pytest.approx(record["latitude"], abs=1e-4)
        assert result.geo_data_version == f"dbip-city-lite {offline_db().build_date}"


def test_table_serves_a_second_application(double, store):
    ips = public_ips(50, seed=23)
    first = ipinfo_chain(double, store=store).lookup_many(ips)
    assert double.batch_requests == 1
    second = ipinfo_chain(double, store=store)  # fresh memory, same table
    answers = second.lookup_many(ips)
    assert double.batch_requests == 1
    assert {r.origin for r in answers.values()} == {"table"}
    for ip in ips:
        assert answers[ip].country_code == first[ip].country_code
        assert answers[ip].city == first[ip].city
        assert answers[ip].fetched_at == first[ip].fetched_at


def test_failures_fall_back_to_the_offline_database_on_timeout(double, store):
    double.latency = 0.4
    clock = Clock()
    chain = ipinfo_chain(
        double,
        store=store,
        clock=clock,
        ipinfo_batch_timeout_seconds=0.1,
        ipinfo_retries=1,
        ipinfo_budget_seconds=1.0,
        retry_seconds=600.0,
    )
    started = time.monotonic()
    answers = chain.lookup_many(["8.8.8.8", "1.1.1.1"])
    assert time.monotonic() - started < 1.5
    for result in answers.values():
        assert result.origin == "offline"
        assert result.geo_status == "resolved"
        assert result.geo_source == "dbip-city-lite"
        assert "timeout" in result.detail
        assert result.expires_at == clock.now + timedelta(seconds=600)  # ipinfo asked again then
    assert answers["8.8.8.8"].country_code == "US"


def test_pending_entries_are_not_hammered_and_back_off(double, store):
    double.fail_status = 500
    clock = Clock()
    options = {"offline_fallback": False, "retry_seconds": 600.0, "ipinfo_retries": 0}
    chain = ipinfo_chain(double, store=store, clock=clock, **options)
    result = chain.lookup("8.8.8.8")
    assert (result.geo_status, result.attempts, result.country_code) == ("pending", 1, None)
    assert result.expires_at == clock.now + timedelta(seconds=600)
    assert double.request_count == 1

    other_app = ipinfo_chain(double, store=store, clock=clock, **options)
    assert other_app.lookup("8.8.8.8").origin == "table"  # pending, retry time not reached
    assert double.request_count == 1

    clock.advance(seconds=601)
    retried = other_app.lookup("8.8.8.8")
    assert double.request_count == 2
    assert retried.attempts == 2
    assert retried.expires_at == clock.now + timedelta(seconds=1200)  # doubled

    double.fail_status = None
    clock.advance(seconds=1201)
    resolved = other_app.lookup("8.8.8.8")
    assert (resolved.geo_status, resolved.geo_source, resolved.attempts) == (
        "resolved",
        "ipinfo",
        0,
    )


def test_refresh_re_resolves_expired_and_pending_entries(double, store):
    clock = Clock()
    ips = public_ips(20, seed=24)
    chain = ipinfo_chain(double, store=store, clock=clock, ttl_seconds=3600.0)
    double.fail_status = 500
    chain.lookup_many(ips[:5])  # offline fallback, retry in 900 s
    double.fail_status = None
    chain.lookup_many(ips[5:15])  # resolved by ipinfo for an hour
    requests_before = double.batch_requests

    clock.advance(seconds=1000)  # only the fallback entries are due
    report = refresh_geo_cache(chain, also_ips=ips[10:], now=clock.now)
    assert report.due == 5
    assert report.refreshed == 5
    assert report.new == 5  # ips[15:] were unknown; ips[10:15] were still fresh
    assert report.by_source == {"ipinfo": 10}
    assert double.batch_requests == requests_before + 2

    fresh = ipinfo_chain(double, store=store, clock=clock).lookup_many(ips)
    assert {r.geo_source for r in fresh.values()} == {"ipinfo"}
    assert {r.origin for r in fresh.values()} == {"table"}
