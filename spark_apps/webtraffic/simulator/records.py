"""From page views to the records a tracker really sends: event times, ids and imperfections.

Every imperfection is decided here with the simulator's seeded random source and written down in
the record's ledger fields, so the ledger is the ground truth of what was sent and why.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np

from webtraffic.contract import MAX_PAYLOAD_BYTES, REASON_CODES
from webtraffic.simulator.traffic import EVENT_TYPES, EXTRA_JSON, TZ_SUFFIX, TrafficModel, Views

MALFORMED_KINDS: tuple[str, ...] = REASON_CODES


@dataclass(frozen=True)
class Imperfections:
    """Rates of what goes wrong on the way from the browser to Kafka (per record)."""

    late_rate: float = 0.05
    late_median_s: float = 8.0
    late_sigma: float = 1.3
    late_max_s: float = 600.0
    out_of_order_rate: float = 0.02
    out_of_order_max_records: int = 8
    duplicate_rate: float = 0.01
    malformed_rate: float = 0.02
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS

    @classmethod
    def none(cls) -> Imperfections:
        """Perfect traffic: on time, in order, unique, well-formed."""
        return cls(late_rate=0.0, out_of_order_rate=0.0, duplicate_rate=0.0, malformed_rate=0.0)

    def validate(self) -> None:
        """Raises ValueError on a rate outside [0, 1] or an unknown malformed kind."""
        for name in ("late_rate", "out_of_order_rate", "duplicate_rate", "malformed_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name.replace('_', '-')} must be between 0 and 1, got {value}")
        unknown = set(self.malformed_kinds) - set(MALFORMED_KINDS)
        if unknown:
            raise ValueError(f"unknown malformed kinds: {', '.join(sorted(unknown))}")
        if self.late_max_s <= 0 or self.late_median_s <= 0:
            raise ValueError("late delays must be positive")


_SECOND_CACHE: dict[int, tuple[int, str, str]] = {}


def format_event_time(ms: int, offset_min: int) -> str:
    """ISO 8601 with milliseconds, in the visitor's offset (``Z`` for UTC)."""
    second, millis = divmod(ms, 1000)
    cached = _SECOND_CACHE.get(offset_min)
    if cached is None or cached[0] != second:  # times are nearly monotonic: one entry per offset
        tz = UTC if offset_min == 0 else timezone(timedelta(minutes=offset_min))
        text = datetime.fromtimestamp(second, tz).isoformat(timespec="seconds")
        prefix, suffix = text[:19], text[19:].replace("+00:00", "Z")
        cached = (second, prefix, suffix)
        _SECOND_CACHE[offset_min] = cached
    return f"{cached[1]}.{millis:03d}{cached[2]}"


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class Sent:
    """What was sent, one entry per record in send order (``seq`` is the index)."""

    event_id: list[str] = field(default_factory=list)
    reason: list[str | None] = field(default_factory=list)
    duplicate_of: list[int | None] = field(default_factory=list)
    late_by_ms: list[int] = field(default_factory=list)
    out_of_order: list[bool] = field(default_factory=list)
    send_ms: list[int] = field(default_factory=list)
    event_time_ms: list[int | None] = field(default_factory=list)
    visitor: list[int] = field(default_factory=list)
    page: list[int] = field(default_factory=list)
    event_type: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)


class RecordStream:
    """Turns page views into records in send order, applying the imperfections.

    The imperfection decisions, late delays, event ids and event-time texts are drawn in bulk
    per time slice; the loop per record only assembles bytes and sends them. Held-back records
    (out of order) and a retrying producer's copies (duplicates) wait in a heap keyed by the
    number of records emitted when they are due.

    Args:
        model: The traffic model (its visitor and page tables).
        chunks: Page views in nominal-time order, a time slice at a time.
        imperfections: Rates of each imperfection.
        realtime: Wait for each record's nominal time and use the clock as its send time.
    """

    def __init__(
        self,
        model: TrafficModel,
        chunks: Iterator[Views],
        imperfections: Imperfections,
        realtime: bool = False,
    ) -> None:
        self.model = model
        self.chunks = chunks
        self.rng = model.rng
        self.np_rng = model.np_rng
        self.imp = imperfections
        self.realtime = realtime

    def run(
        self,
        send: Callable[[bytes, bytes], None],
        limit: int | None = None,
        end_ms: int | None = None,
        tick: Callable[[int], None] | None = None,
    ) -> Sent:
        """Sends records until ``limit`` records went out or nominal time reaches ``end_ms``.

        Records still held back at the end are not sent (a stop is a stop).

        Returns:
            What was sent, in send order.
        """
        imp, np_rng = self.imp, self.np_rng
        sent = Sent()
        ids, reasons, dups, lates, ooos = (
            sent.event_id,
            sent.reason,
            sent.duplicate_of,
            sent.late_by_ms,
            sent.out_of_order,
        )
        sends, etimes, visitors, pages, types, sizes = (
            sent.send_ms,
            sent.event_time_ms,
            sent.visitor,
            sent.page,
            sent.event_type,
            sent.size,
        )
        m = self.model
        v_const, v_key, v_rich, v_tz = m.v_const, m.v_key, m.v_rich, m.v_tz
        type_json = [',"event_type":"' + t + '"' for t in EVENT_TYPES]
        limit = limit if limit is not None else 2**62
        end_ms = end_ms if end_ms is not None else 2**62
        held: list[tuple[int, int, tuple[Any, ...]]] = []
        tie = 0
        emitted = 0
        kinds = imp.malformed_kinds
        sha256 = hashlib.sha256

        def emit(key: bytes, value: bytes, facts: tuple[Any, ...], dup_after: int) -> None:
            nonlocal emitted, tie
            send(key, value)
            (event_id, reason, dup_of, late, ooo, send_ms, event_ms, vi, pg, et) = facts
            ids.append(event_id)
            reasons.append(reason)
            dups.append(dup_of)
            lates.append(late)
            ooos.append(ooo)
            sends.append(send_ms)
            etimes.append(event_ms)
            visitors.append(vi)
            pages.append(pg)
            types.append(et)
            sizes.append(len(value))
            seq = emitted
            emitted += 1
            if dup_after >= 0:
                # A retrying producer: the same bytes again, shortly after.
                copy = (event_id, None, seq, late, False, send_ms, event_ms, vi, pg, et)
                tie += 1
                heapq.heappush(held, (emitted + dup_after, tie, (key, value, copy, -1)))
            if tick is not None and emitted % 1000 == 0:
                tick(emitted)

        for views in self.chunks:
            n = len(views.nominal_ms)
            nominal = views.nominal_ms
            late_ms = np.zeros(n, dtype=np.int64)
            if imp.late_rate:
                late = np_rng.random(n) < imp.late_rate
                delay = np_rng.lognormal(np.log(imp.late_median_s), imp.late_sigma, int(late.sum()))
                late_ms[late] = (np.minimum(delay, imp.late_max_s) * 1000).astype(np.int64)
            hold_for = np.zeros(n, dtype=np.int64)
            if imp.out_of_order_rate:
                ooo = np_rng.random(n) < imp.out_of_order_rate
                hold_for[ooo] = np_rng.integers(1, imp.out_of_order_max_records + 1, int(ooo.sum()))
            dup_after = np.full(n, -1, dtype=np.int64)
            if imp.duplicate_rate:
                dup = np_rng.random(n) < imp.duplicate_rate
                dup_after[dup] = np_rng.integers(0, 4, int(dup.sum()))
            bad = np.full(n, -1, dtype=np.int64)
            if imp.malformed_rate:
                mal = np_rng.random(n) < imp.malformed_rate
                bad[mal] = np_rng.integers(0, len(kinds), int(mal.sum()))
            hex_ids = np_rng.bytes(16 * n).hex()
            vis = views.visitor
            tz = np.asarray(v_tz, dtype=np.int64)[vis]
            event_ms_all = nominal - late_ms
            if self.realtime:
                texts: list[str] = [""] * n
            else:
                local = (event_ms_all + tz * 60_000).astype("datetime64[ms]")
                texts = np.datetime_as_string(local, unit="ms").tolist()
            for i, (t, vi, pg, url, ref, et, ex, late, hold, dup_i, bad_i) in enumerate(
                zip(
                    nominal.tolist(), vis.tolist(), views.page.tolist(), views.url.tolist(),
                    views.referrer.tolist(), views.event_type.tolist(), views.extra.tolist(),
                    late_ms.tolist(), hold_for.tolist(), dup_after.tolist(), bad.tolist(),
                    strict=True,
                )
            ):  # fmt: skip
                while held and held[0][0] <= emitted:
                    emit(*heapq.heappop(held)[2])
                if emitted >= limit or t >= end_ms:
                    return sent
                offset = v_tz[vi]
                if self.realtime:
                    t = _realtime_clock(t)
                    event_ms = t - late
                    event_time = format_event_time(event_ms, offset)
                else:
                    event_ms = t - late
                    event_time = texts[i] + TZ_SUFFIX[offset]
                rich = v_rich[vi]
                if rich:
                    event_id = hex_ids[32 * i : 32 * i + 32]
                    tail = f'{type_json[et]},"event_id":"{event_id}"{EXTRA_JSON[ex]}'
                else:
                    event_id = None
                    tail = ""
                value = (
                    f'{{"url":{url},"referrer":{ref}{v_const[vi]}{tail},'
                    f'"event_time":"{event_time}"}}'
                ).encode()
                reason = None
                if bad_i >= 0:
                    reason = kinds[bad_i]
                    value, event_ms = self._malformed(reason, json.loads(value), event_ms)
                    event_id = sha256(value).hexdigest()
                    dup_i = -1
                elif event_id is None:
                    event_id = sha256(value).hexdigest()
                facts = (event_id, reason, None, late, hold > 0, t, event_ms, vi, pg, et)
                if hold:
                    tie += 1
                    heapq.heappush(held, (emitted + hold, tie, (v_key[vi], value, facts, dup_i)))
                else:
                    emit(v_key[vi], value, facts, dup_i)
        return sent

    def _malformed(
        self, kind: str, payload: dict[str, Any], event_ms: int
    ) -> tuple[bytes, int | None]:
        """Returns the bytes of a record with exactly one defect, and its event time if any."""
        rng = self.rng
        bad = dict(payload)
        if kind == "invalid_utf8":
            # A Latin-1 tracker build: "é" sent as the single byte 0xE9.
            text = _encode({**bad, "url": bad["url"] + "/caf\u00e9"})
            return text.replace("caf\u00e9".encode(), b"caf\xe9"), event_ms
        if kind == "oversized":
            filler = "x" * (MAX_PAYLOAD_BYTES + rng.randint(1, 16_000))
            bad["headers"] = {**bad["headers"], "x-debug-trace": filler}
            return _encode(bad), event_ms
        if kind == "not_json":
            full = _encode(bad)
            choice = rng.randrange(3)
            if choice == 0:  # truncated in flight
                return full[: rng.randint(1, len(full) - 2)].rstrip(b"\\"), None
            if choice == 1:  # a form post instead of JSON
                return f"url={bad['url']}&host={bad['host']}&ip={bad['ip']}".encode(), None
            return b"<html><body>502 Bad Gateway</body></html>", None
        if kind == "not_object":
            choice = rng.randrange(4)
            if choice == 0:
                return _encode([bad]), None
            return [b'"page_view"', b"42", b"null"][choice - 1], None
        if kind == "wrong_type":
            field_name = rng.choice(("user_id", "academy_id", "user_agent", "ip", "headers"))
            replacement: Any = {
                "user_id": f"u-{rng.randint(1, 99999)}",
                "academy_id": "learnhub",
                "user_agent": bad["headers"]["user-agent"],
                "ip": rng.randint(16_777_216, 3_758_096_383),
                "headers": [["user-agent", bad["headers"]["user-agent"]]],
            }[field_name]
            bad[field_name] = replacement
            return _encode(bad), event_ms
        if kind == "missing_event_time":
            if rng.random() < 0.5:
                del bad["event_time"]
            else:
                bad["event_time"] = None
            return _encode(bad), None
        if kind == "bad_event_time":
            bad["event_time"] = rng.choice(
                ("yesterday", "2026-13-45T25:61:00Z", "04/12/2026 10:00:00", "2026-02-30T10:00:00Z",
                 "Thu, 03 Dec 2026 10:00:00 GMT", "NaN")
            )  # fmt: skip
            return _encode(bad), None
        if kind == "future_event_time":
            future_ms = event_ms + int(rng.uniform(2, 20) * 365 * 86_400_000)
            bad["event_time"] = format_event_time(future_ms, 0)
            return _encode(bad), future_ms
        if kind == "missing_url":
            if rng.random() < 0.5:
                del bad["url"]
            else:
                bad["url"] = ""
            return _encode(bad), event_ms
        if kind == "missing_host":
            if rng.random() < 0.5:
                del bad["host"]
            else:
                bad["host"] = ""
            return _encode(bad), event_ms
        if kind == "invalid_ip":
            bad["ip"] = rng.choice(
                ("999.12.4.1", "not-an-ip", "10.0.0", "2001:db8::zz", "", "256.256.256.256", None)
            )
            return _encode(bad), event_ms
        raise ValueError(f"unknown malformed kind {kind!r}")


def _realtime_clock(nominal_ms: int) -> int:
    """Waits until the nominal send time and returns the actual time (epoch ms)."""
    delay = nominal_ms / 1000 - time.time()
    if delay > 0:
        time.sleep(delay)
    return int(time.time() * 1000)
