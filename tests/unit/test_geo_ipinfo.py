"""The ipinfo client against the local double over real HTTP: batches, retries, breaker, token."""

from __future__ import annotations

import ipaddress
import logging
import math
import secrets
import time

import pytest
import requests

from tests.geo_helpers import TOKEN, offline_db, public_ips
from webtraffic.geo.breaker import CircuitBreaker
from webtraffic.geo.ipinfo import IpinfoClient, IpinfoUnavailableError, parse_retry_after
from webtraffic.settings import Secret


class RecordingSleep:
    """Really sleeps, and remembers how long it was asked to."""

    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        time.sleep(seconds)


def make_client(double, **kwargs) -> IpinfoClient:
    options = {
        "timeout_seconds": 1.0,
        "batch_timeout_seconds": 2.0,
        "retries": 2,
        "backoff_seconds": 0.02,
        "backoff_max_seconds": 0.5,
        "budget_seconds": 5.0,
        "breaker": CircuitBreaker(3, 30.0),
    }
    options.update(kwargs)
    return IpinfoClient(double.base_url, Secret(options.pop("token", TOKEN)), **options)


def test_single_lookup_answers_like_ipinfo(double):
    client = make_client(double)
    answer = client.lookup("8.8.8.8")
    record = offline_db().record(ipaddress.ip_address("8.8.8.8"))
    assert answer["country"] == record["country_code"]
    assert answer["city"] == record["city"]
    lat, lon = (float(x) for x in answer["loc"].split(","))
    assert lat == pytest.approx(record["latitude"], abs=1e-4)
    assert lon == pytest.approx(record["longitude"], abs=1e-4)
    assert client.lookup("10.0.0.1") == {"ip": "10.0.0.1", "bogon": True}
    assert double.single_requests == 2


def test_batch_is_clipped_to_1000_per_request(double):
    ips = public_ips(2500, seed=11)
    client = make_client(double)
    outcome = client.lookup_batch(ips)
    assert sorted(r.items for r in double.records) == [500, 1000, 1000]
    assert double.batch_requests == 3 == outcome.requests
    assert set(outcome.answers) == set(ips)
    assert not outcome.failed


def test_configured_batch_size_is_honoured_and_never_above_1000(double):
    ips = public_ips(700, seed=12)
    client = make_client(double, batch_size=300)
    client.lookup_batch(ips)
    assert [r.items for r in double.records] == [300, 300, 100]
    assert make_client(double, batch_size=5000).batch_size == 1000


def test_double_refuses_more_than_1000_items(double):
    response = requests.post(
        f"{double.base_url}/batch",
        json=[f"8.8.{i // 256}.{i % 256}" for i in range(1001)],
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert response.status_code == 400


def test_bad_token_is_403_and_not_retried(double, caplog):
    wrong_token = secrets.token_urlsafe(16)
    client = make_client(double, token=wrong_token)
    with caplog.at_level(logging.DEBUG):
        outcome = client.lookup_batch(["8.8.8.8", "1.1.1.1"])
    assert double.records[-1].status == 403
    assert double.request_count == 1  # a rejected token is not retried
    assert "token rejected" in outcome.failed["8.8.8.8"]
    assert wrong_token not in caplog.text
    assert wrong_token not in repr(client)


def test_retry_after_is_honoured_on_429(double):
    double.fail_next = [429, 429]
    double.retry_after = "0.3"
    sleep = RecordingSleep()
    client = make_client(double, sleep=sleep, backoff_seconds=0.01)
    started = time.monotonic()
    outcome = client.lookup_batch(["8.8.8.8"])
    elapsed = time.monotonic() - started
    assert sleep.calls == [0.3, 0.3]
    assert elapsed >= 0.6
    assert [r.status for r in double.records] == [429, 429, 200]
    assert "8.8.8.8" in outcome.answers


def test_exponential_backoff_on_5xx(double):
    double.fail_next = [500, 503]
    sleep = RecordingSleep()
    client = make_client(double, sleep=sleep, backoff_seconds=0.05)
    outcome = client.lookup_batch(["1.1.1.1"])
    assert "1.1.1.1" in outcome.answers
    assert len(sleep.calls) == 2
    assert 0.04 <= sleep.calls[0] <= 0.06  # 0.05 +-20 % jitter
    assert 0.08 <= sleep.calls[1] <= 0.12  # doubled


def test_retries_are_bounded(double):
    double.fail_status = 500
    client = make_client(double, retries=2, breaker=CircuitBreaker(100, 30.0))
    outcome = client.lookup_batch(["1.1.1.1"])
    assert double.request_count == 3  # first try + 2 retries
    assert "after 3 attempts" in outcome.failed["1.1.1.1"]


def test_long_retry_after_is_not_awaited_and_opens_the_breaker(double):
    double.fail_status = 429
    double.retry_after = "3600"
    client = make_client(double)
    started = time.monotonic()
    outcome = client.lookup_batch(["1.1.1.1"])
    assert time.monotonic() - started < 1.0
    assert double.request_count == 1
    assert "Retry-After 3600" in outcome.failed["1.1.1.1"]
    assert client.breaker.state == "open"
    assert client.breaker.seconds_until_trial() > 3000
    client.lookup_batch(["8.8.8.8"])
    assert double.request_count == 1  # the breaker kept it from calling again


def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


def test_circuit_breaker_opens_half_opens_and_closes(double):
    double.fail_status = 500
    now = [0.0]
    breaker = CircuitBreaker(2, 0.3, clock=lambda: now[0])
    client = make_client(double, retries=0, breaker=breaker)
    client.lookup_batch(["1.1.1.1"])
    assert breaker.state == "closed"
    client.lookup_batch(["1.1.1.1"])
    assert breaker.state == "open"
    assert double.request_count == 2
    outcome = client.lookup_batch(["1.1.1.1"])
    assert double.request_count == 2  # refused without a request
    assert "circuit breaker open" in outcome.failed["1.1.1.1"]

    now[0] += 0.35
    assert breaker.state == "half-open"
    client.lookup_batch(["1.1.1.1"])  # the trial fails: open again
    assert double.request_count == 3
    assert breaker.state == "open"

    now[0] += 0.35
    double.fail_status = None
    outcome = client.lookup_batch(["1.1.1.1"])  # the trial succeeds: closed
    assert "1.1.1.1" in outcome.answers
    assert breaker.state == "closed"
    client.lookup_batch(["8.8.8.8"])
    assert double.request_count == 5


def test_breaker_allows_one_trial_at_a_time():
    now = [0.0]
    breaker = CircuitBreaker(1, 10.0, clock=lambda: now[0])
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 10.0
    assert breaker.allow()
    assert not breaker.allow()  # a second caller waits for the trial's outcome
    breaker.record_success()
    assert breaker.allow()
    assert breaker.times_opened == 1


def test_timeout_gives_up_within_the_budget(double):
    double.latency = 0.5
    client = make_client(
        double, batch_timeout_seconds=0.1, retries=5, backoff_seconds=0.01, budget_seconds=0.6
    )
    started = time.monotonic()
    outcome = client.lookup_batch(["1.1.1.1"])
    elapsed = time.monotonic() - started
    assert "1.1.1.1" in outcome.failed
    assert "timeout" in outcome.failed["1.1.1.1"] or "budget" in outcome.failed["1.1.1.1"]
    assert elapsed < 0.6 + 0.3
    with pytest.raises(IpinfoUnavailableError):
        make_client(double, timeout_seconds=0.1, retries=0).lookup("1.1.1.1")


def test_partial_batch_answers_report_the_missing_addresses(double):
    double.partial_failure_rate = 0.3
    ips = public_ips(400, seed=13)
    outcome = make_client(double).lookup_batch(ips)
    assert len(outcome.answers) + len(outcome.failed) == 400
    assert math.isclose(len(outcome.failed) / 400, 0.3, abs_tol=0.08)
    assert set(outcome.failed.values()) == {"missing from the batch answer"}
