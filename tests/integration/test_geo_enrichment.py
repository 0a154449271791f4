"""Geo enrichment of Spark batches through the chain, the ref.geo_cache table and the double."""

from __future__ import annotations

import ipaddress
import time
import uuid

import pytest

from tests.geo_helpers import TOKEN, geo_settings, offline_db, public_ips
from webtraffic.geo.cache_table import SparkGeoCacheStore
from webtraffic.geo.chain import GeoChain
from webtraffic.geo.enrich import enrich_with_geo
from webtraffic.geo.ipinfo import IpinfoClient
from webtraffic.geo.ipinfo_double import IpinfoDouble
from webtraffic.geo.model import GEO_COLUMNS

pytestmark = pytest.mark.integration

ROWS_PER_IP = 10
DISTINCT = 2000


@pytest.fixture(scope="module")
def double():
    with IpinfoDouble(offline_db(), token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def ips():
    return public_ips(DISTINCT, seed=31)


@pytest.fixture(scope="module")
def events(spark, ips):
    rows = [(i, ips[i % DISTINCT]) for i in range(DISTINCT * ROWS_PER_IP)]
    frame = spark.createDataFrame(rows, "event_no BIGINT, ip STRING").repartition(4)
    return frame.cache()


def make_chain(spark, double, table, **overrides) -> GeoChain:
    geo = geo_settings(provider="ipinfo", ipinfo_url=double.base_url, **overrides)
    return GeoChain(
        geo,
        store=SparkGeoCacheStore(spark, table),
        offline=offline_db() if geo.offline_fallback else None,
        ipinfo=IpinfoClient.from_settings(geo),
    )


def expected(ip: str) -> dict:
    """Independent expectation: what maxminddb itself returns for the address."""
    record = offline_db().record(ipaddress.ip_address(ip))
    return {
        "country_code": record["country_code"],
        "region": record["state1"] or None,
        "city": record["city"] or None,
        "latitude": record["latitude"],
        "longitude": record["longitude"],
    }


def check_rows(rows, source: str) -> None:
    assert len(rows) == DISTINCT * ROWS_PER_IP
    for row in rows:
        want = expected(row.ip)
        assert row.geo_status == "resolved", row
        assert row.geo_source == source
        assert row.country_code == want["country_code"]
        assert row.region == want["region"]
        assert row.city == want["city"]
        assert row.latitude == pytest.approx(want["latitude"], abs=1e-4)
        assert row.longitude == pytest.approx(want["longitude"], abs=1e-4)


def test_cold_warm_and_second_application(spark, double, events, ips):
    double.reset()
    table = f"ref.geo_cache_it_{uuid.uuid4().hex[:8]}"
    chain = make_chain(spark, double, table)

    cold = enrich_with_geo(events, chain).collect()
    assert double.batch_requests <= 2
    assert double.batch_requests == 2  # 2,000 misses = two batches of 1,000
    assert double.single_requests == 0
    check_rows(cold, "ipinfo")
    assert spark.table(table).count() == DISTINCT
    assert spark.table(table).select("ip").distinct().count() == DISTINCT

    warm = enrich_with_geo(events, chain).collect()
    assert double.request_count == 2  # warm: no request at all
    check_rows(warm, "ipinfo")
    assert chain.stats["memory"] == DISTINCT

    # A second application: a fresh chain and memory cache, the same table.
    second = make_chain(spark, double, table)
    again = enrich_with_geo(events, second).collect()
    assert double.request_count == 2
    assert second.stats["table"] == DISTINCT
    check_rows(again, "ipinfo")
    assert spark.table(table).count() == DISTINCT  # nothing appended


def test_api_failing_completes_with_offline_answers_within_the_budget(spark, double, events):
    double.reset()
    double.fail_next = [429] * 2
    double.retry_after = "0.2"
    double.fail_status = 500  # after the two 429s, every request fails
    table = f"ref.geo_cache_it_{uuid.uuid4().hex[:8]}"
    budget = 2.0
    chain = make_chain(spark, double, table, ipinfo_budget_seconds=budget, ipinfo_retries=3)
    spent: list[float] = []
    resolve = chain.ipinfo.lookup_batch

    def timed(batch):  # measures the real client call; it still talks to the double
        started = time.monotonic()
        try:
            return resolve(batch)
        finally:
            spent.append(time.monotonic() - started)

    chain.ipinfo.lookup_batch = timed
    rows = enrich_with_geo(events, chain).collect()
    check_rows(rows, "dbip-city-lite")
    assert chain.stats["fallback"] == DISTINCT
    assert len(spent) == 1  # one resolver call for the whole batch
    assert spent[0] <= budget + 0.5  # the stream waits no longer than the configured budget
    assert [r.status for r in double.records[:2]] == [429, 429]
    assert {r.status for r in double.records[2:]} == {500}
    entries = chain.store.get_many([r.ip for r in rows[:20]])
    for entry in entries.values():
        assert entry.geo_source == "dbip-city-lite"
        assert entry.detail.startswith("ipinfo failed")
        assert (entry.expires_at - entry.fetched_at).total_seconds() == chain.geo.retry_seconds


def test_api_failing_without_fallback_marks_rows_pending(spark, double, events, ips):
    double.reset()
    double.fail_status = 429
    double.retry_after = "0.05"
    table = f"ref.geo_cache_it_{uuid.uuid4().hex[:8]}"
    chain = make_chain(
        spark, double, table, offline_fallback=False, ipinfo_retries=2, retry_seconds=600.0
    )
    rows = enrich_with_geo(events, chain).collect()
    assert len(rows) == DISTINCT * ROWS_PER_IP
    assert {r.geo_status for r in rows} == {"pending"}
    assert {r.country_code for r in rows} == {None}
    requests = double.request_count
    assert requests <= 2 * 3  # two batches, each tried at most 1 + 2 times
    entries = chain.store.get_many(ips[:10])
    assert {e.geo_status for e in entries.values()} == {"pending"}
    assert all(e.attempts == 1 and e.expires_at > e.fetched_at for e in entries.values())

    # The next micro-batch does not hammer the API: the pending entries wait for their retry time.
    enrich_with_geo(events, make_chain(spark, double, table, offline_fallback=False)).collect()
    assert double.request_count == requests


def test_bogons_null_and_spellings(spark, double):
    double.reset()
    table = f"ref.geo_cache_it_{uuid.uuid4().hex[:8]}"
    chain = make_chain(spark, double, table)
    frame = spark.createDataFrame(
        [(1, "10.1.2.3"), (2, "::1"), (3, None), (4, "8.8.8.8"), (5, "::FFFF:8.8.8.8")],
        "n INT, ip STRING",
    )
    rows = {r.n: r for r in enrich_with_geo(frame, chain).collect()}
    assert list(enrich_with_geo(frame, chain).columns) == ["n", "ip", *GEO_COLUMNS]
    assert rows[1].geo_status == "non-routable"
    assert rows[2].geo_status == "non-routable"
    assert rows[3].geo_status == "invalid"
    assert rows[4].country_code == rows[5].country_code == "US"
    assert double.batch_requests == 1
    assert [r.items for r in double.records] == [1]  # both spellings: one address sent
