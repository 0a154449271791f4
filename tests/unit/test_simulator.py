"""The simulator: deterministic, realistic, imperfect at the configured rates, and honest in its
ledger (its verdicts agree with an independent reference classifier)."""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from webtraffic.contract import MAX_PAYLOAD_BYTES, REASON_CODES
from webtraffic.simulator import oracle
from webtraffic.simulator.ledger import read_ledger, write_ledger
from webtraffic.simulator.records import Imperfections
from webtraffic.simulator.run import FileSink, simulate

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def run_to_file(tmp_path: Path, name: str, **kwargs) -> tuple[Path, list[dict]]:
    out = tmp_path / f"{name}.jsonl"
    kwargs.setdefault("seed", 11)
    kwargs.setdefault("events", 5_000)
    kwargs.setdefault("start", START)
    _, rows = simulate(FileSink(out), progress=False, **kwargs)
    return out, rows


@pytest.fixture(scope="module")
def big_run(tmp_path_factory) -> tuple[list[bytes], list[dict]]:
    """60,000 records with the default imperfections, written to a file."""
    out, rows = run_to_file(tmp_path_factory.mktemp("sim"), "big", events=60_000, seed=3)
    lines = out.read_bytes().split(b"\n")[:-1]
    return lines, rows


def test_same_seed_same_bytes(tmp_path):
    first, _ = run_to_file(tmp_path, "a")
    second, _ = run_to_file(tmp_path, "b")
    other, _ = run_to_file(tmp_path, "c", seed=12)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_exact_record_count_and_send_order(big_run):
    lines, rows = big_run
    assert len(lines) == len(rows) == 60_000
    assert [r["seq"] for r in rows] == list(range(60_000))


def test_imperfection_shares_match_configured_rates(big_run):
    _, rows = big_run
    n = len(rows)
    imp = Imperfections()
    originals = [r for r in rows if r["duplicate_of"] is None]
    shares = {
        "malformed": sum(not r["valid"] for r in originals) / len(originals),
        "duplicate": sum(r["duplicate_of"] is not None for r in rows) / n,
        "late": sum(r["late_by_ms"] > 0 for r in originals) / len(originals),
        "out_of_order": sum(r["out_of_order"] for r in rows) / n,
    }
    expected = {
        "malformed": imp.malformed_rate,
        "duplicate": imp.duplicate_rate * (1 - imp.malformed_rate),
        "late": imp.late_rate,
        "out_of_order": imp.out_of_order_rate,
    }
    for name, rate in expected.items():
        assert shares[name] == pytest.approx(rate, rel=0.15), name
    reasons = Counter(r["reason"] for r in rows if r["reason"])
    assert set(reasons) == set(REASON_CODES)
    # Each malformed kind gets an even share of the malformed records.
    per_kind = sum(reasons.values()) / len(REASON_CODES)
    assert all(count == pytest.approx(per_kind, rel=0.35) for count in reasons.values())


def test_late_tail_reaches_beyond_the_watermark_but_is_capped(big_run):
    _, rows = big_run
    late = [r["late_by_ms"] for r in rows if r["late_by_ms"] > 0]
    beyond = [d for d in late if d > 30_000]
    assert 0.05 < len(beyond) / len(late) < 0.35
    assert max(late) <= 600_000
    on_time = [r for r in rows if r["late_by_ms"] == 0 and r["valid"]]
    assert all(r["event_time_ms"] == r["send_ms"] for r in on_time)


def test_ledger_verdicts_agree_with_the_reference_classifier(big_run):
    lines, rows = big_run
    for line, row in zip(lines, rows, strict=True):
        # A file has no Kafka timestamp; the send time stands in for it.
        assert oracle.classify(line, row["send_ms"]) == row["reason"], line[:300]


def test_event_ids_follow_the_contract(big_run):
    lines, rows = big_run
    for line, row in zip(lines, rows, strict=True):
        if not row["valid"]:
            continue
        payload = json.loads(line)
        if "event_id" in payload:
            assert row["event_id"] == payload["event_id"]
        else:
            import hashlib

            assert row["event_id"] == hashlib.sha256(line).hexdigest()
    originals = {r["seq"]: r for r in rows}
    for row in rows:
        if row["duplicate_of"] is not None:
            original = originals[row["duplicate_of"]]
            assert original["event_id"] == row["event_id"]
            assert lines[row["seq"]] == lines[original["seq"]]
            assert original["seq"] < row["seq"]


def test_traffic_is_realistic(big_run):
    lines, rows = big_run
    valid = [json.loads(line) for line, r in zip(lines, rows, strict=True) if r["valid"]]
    hosts = Counter(p["host"] for p in valid)
    assert len(hosts) == 4
    families = {p["user_agent"]["family"] for p in valid}
    assert {"Googlebot", "HeadlessChrome", "Chrome", "Mobile Safari"} <= families
    devices = Counter(r["device_class"] for r in rows)
    assert set(devices) == {"desktop", "mobile", "tablet", "bot"}
    ips = {p["ip"] for p in valid}
    v6 = sum(ipaddress.ip_address(ip).version == 6 for ip in ips)
    private = sum(not ipaddress.ip_address(ip).is_global for ip in ips)
    assert 0.1 < v6 / len(ips) < 0.35
    assert 0.01 < private / len(ips) < 0.08
    logged_in = {p["user_id"] for p in valid if p["user_id"] is not None}
    assert len(logged_in) > 100
    referrers = Counter(
        "none" if p["referrer"] is None else p["referrer"].split("/")[2] for p in valid
    )
    assert {"www.google.com", "www.facebook.com", "none"} <= set(referrers)
    # A long tail of pages: the top page is common, hundreds of pages are seen.
    pages = Counter(r["path"] for r in rows)
    assert len(pages) > 300
    # Every visitor keeps one IP.
    ip_per_visitor: dict[str, set[str]] = {}
    for r in rows:
        ip_per_visitor.setdefault(r["visitor_key"], set()).add(r["ip"])
    assert all(len(v) == 1 for v in ip_per_visitor.values())


def test_visitors_come_back_for_several_sessions(big_run):
    _, rows = big_run
    found = oracle.sessions(oracle.valid_unique(rows))
    per_visitor = Counter(s.visitor_key for s in found)
    assert sum(1 for c in per_visitor.values() if c >= 2) > 200
    assert any(s.events >= 5 for s in found)
    anonymous_hashed = {s.visitor_key for s in found if s.visitor_key.startswith("h:")}
    assert len(anonymous_hashed) > 100  # anonymous visitors without a cookie stay apart


def test_oversized_records_are_over_the_limit(big_run):
    lines, rows = big_run
    sizes = [len(line) for line, r in zip(lines, rows, strict=True) if r["reason"] == "oversized"]
    assert sizes
    assert min(sizes) > MAX_PAYLOAD_BYTES
    assert max(len(line) for line, r in zip(lines, rows, strict=True) if r["valid"]) < 4096


def test_no_imperfections_means_clean_traffic(tmp_path):
    _, rows = run_to_file(tmp_path, "clean", imperfections=Imperfections.none())
    assert all(r["valid"] and r["duplicate_of"] is None and r["late_by_ms"] == 0 for r in rows)
    assert not any(r["out_of_order"] for r in rows)


def test_events_spread_over_the_span(tmp_path):
    _, rows = run_to_file(tmp_path, "span", events=20_000, span_s=600)
    times = [r["send_ms"] for r in rows]
    start_ms = int(START.timestamp() * 1000)
    assert min(times) >= start_ms
    assert max(times) - start_ms == pytest.approx(600_000, rel=0.25)


def test_bad_rates_are_refused():
    with pytest.raises(ValueError, match="late-rate must be between 0 and 1"):
        Imperfections(late_rate=1.5).validate()


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_ledger_round_trip(tmp_path, suffix):
    _, rows = run_to_file(tmp_path, "ledger", events=500)
    path = tmp_path / f"ledger{suffix}"
    write_ledger(rows, path)
    assert read_ledger(path) == rows


def test_visitor_json_is_what_json_dumps_gives():
    from webtraffic.contract import visitor_key
    from webtraffic.simulator.traffic import (
        TrafficModel,
        TrafficProfile,
        _const_json,
        _const_json_reference,
    )

    model = TrafficModel(5, TrafficProfile())
    visitors = model.sample_visitors(2000)
    assert {v.device_class for v in visitors} == {"desktop", "mobile", "tablet", "bot"}
    for visitor in visitors:
        # The text built in bulk is what json.dumps gives for the visitor's fields.
        assert visitor.const_json == _const_json(visitor) == _const_json_reference(visitor)
        key = visitor_key(visitor.user_id, visitor.anonymous_id, visitor.ip, visitor.user_agent)
        assert visitor.key == key


def test_page_views_come_in_nominal_time_order_from_the_start():
    from webtraffic.simulator.traffic import TrafficModel, TrafficProfile

    model = TrafficModel(5, TrafficProfile())
    start_ms = int(START.timestamp() * 1000)
    last, seen = start_ms, 0
    for views in model.view_chunks(start_ms, 5.0, warmup_ms=600_000, chunk_ms=10_000):
        assert views.nominal_ms[0] >= last
        assert (views.nominal_ms[1:] >= views.nominal_ms[:-1]).all()
        last = int(views.nominal_ms[-1])
        seen += len(views.nominal_ms)
        if seen > 5000:
            break


def test_workers_split_the_run_deterministically(tmp_path):
    out, rows = run_to_file(tmp_path, "w2a", events=20_000, workers=2)
    again, _ = run_to_file(tmp_path, "w2b", events=20_000, workers=2)
    single, _ = run_to_file(tmp_path, "w1", events=20_000)
    assert out.read_bytes() == again.read_bytes()
    assert out.read_bytes() != single.read_bytes()
    lines = out.read_bytes().split(b"\n")[:-1]
    assert len(lines) == len(rows) == 20_000
    assert [r["seq"] for r in rows] == list(range(20_000))
    # seq orders by (worker, the worker's send order); each worker sends its share.
    workers = [r["worker"] for r in rows]
    assert workers == sorted(workers)
    assert Counter(workers) == {0: 10_000, 1: 10_000}
    # The workers' visitors are disjoint, and the ledger still tells the truth.
    owner: dict[str, set[int]] = {}
    for row in rows:
        owner.setdefault(row["visitor_key"], set()).add(row["worker"])
    assert all(len(w) == 1 for w in owner.values())
    for line, row in zip(lines, rows, strict=True):
        assert oracle.classify(line, row["send_ms"]) == row["reason"]
    copies = [r for r in rows if r["duplicate_of"] is not None]
    assert copies
    for row in copies:
        original = rows[row["duplicate_of"]]
        assert original["worker"] == row["worker"]
        assert lines[row["seq"]] == lines[original["seq"]]
    logged_in = [r["visitor_key"] for r in rows if r["visitor_key"].startswith("u:")]
    assert len(set(logged_in)) > 100


def test_workers_need_events(tmp_path):
    with pytest.raises(ValueError, match="--workers goes with --events"):
        simulate(FileSink(tmp_path / "x.jsonl"), rate=10, duration_s=1, workers=2)


def test_ipv6_text_is_what_ipaddress_gives():
    import random

    from webtraffic.simulator.traffic import format_ipv6

    rng = random.Random(1)
    values = [0, 1, 2**128 - 1, 1 << 112, (1 << 112) | 1, 0x20010DB8000000000001000000000001]
    for _ in range(20_000):
        # Random groups, many of them zero, so every shape of zero run occurs.
        groups = [0 if rng.random() < 0.5 else rng.randrange(1, 1 << 16) for _ in range(8)]
        values.append(sum(g << (16 * (7 - i)) for i, g in enumerate(groups)))
        values.append(rng.getrandbits(128))
    for value in values:
        assert format_ipv6(value) == str(ipaddress.IPv6Address(value)), hex(value)
