"""`webtraffic geo lookup`: answers and their origin; an invalid address is one line, exit 1."""

from __future__ import annotations

import json
import uuid

from tests.geo_helpers import GEO_DB_DIR, offline_db
from webtraffic.cli import main


def _env(monkeypatch):
    monkeypatch.setenv("WEBTRAFFIC_GEO_DB_DIR", str(GEO_DB_DIR))
    monkeypatch.setenv("WEBTRAFFIC_GEO_PROVIDER", "offline")
    monkeypatch.setenv("WEBTRAFFIC_GEO_CACHE_TABLE", f"ref.geo_cli_{uuid.uuid4().hex[:8]}")


def test_lookup_prints_answer_and_origin(monkeypatch, capsys):
    _env(monkeypatch)
    assert main(["geo", "lookup", "81.2.69.142", "192.168.0.7"]) == 0
    out = capsys.readouterr().out
    assert "United Kingdom (GB)" in out
    assert f"offline database DB-IP City Lite (data of {offline_db().build_date})" in out
    assert "non-routable (private)" in out
    # Asked again: the cache table answers.
    assert main(["geo", "lookup", "--json", "81.2.69.142"]) == 0
    [answer] = json.loads(capsys.readouterr().out)
    assert answer["origin"] == "table"
    assert answer["country_code"] == "GB"
    assert answer["geo_source"] == "dbip-city-lite"


def test_invalid_address_is_one_line_and_exit_1(monkeypatch, capsys):
    _env(monkeypatch)
    assert main(["geo", "lookup", "8.8.8.8", "999.1.1.1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == "webtraffic: error: not an IP address: '999.1.1.1'"
