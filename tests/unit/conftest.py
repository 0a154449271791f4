"""Fixtures of the unit tests that talk to the local ipinfo double over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.geo_helpers import TOKEN, offline_db
from webtraffic.geo.ipinfo_double import IpinfoDouble


@pytest.fixture(scope="session")
def ipinfo_server() -> Iterator[IpinfoDouble]:
    """One double on 127.0.0.1 for the unit tests, started when first asked for."""
    with IpinfoDouble(offline_db(), token=TOKEN) as server:
        yield server


@pytest.fixture
def double(ipinfo_server: IpinfoDouble) -> IpinfoDouble:
    """The double, with its counters and failure settings reset for each test."""
    ipinfo_server.reset()
    return ipinfo_server
