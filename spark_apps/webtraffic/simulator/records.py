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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np

from webtraffic.contract import MAX_PAYLOAD_BYTES, REASON_CODES
from webtraffic.simulator.traffic import EVENT_TYPES, EXTRA_JSON, TZ_SUFFIX, TrafficModel, Views

MALFORMED_KINDS: tuple[str, ...] = REASON_CODES
SendMany = Callable[[list[bytes], list[bytes], "np.ndarray | None"], None]


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


def draw_imperfections(
    np_rng: np.random.Generator, imp: Imperfections, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draws the imperfections of ``n`` records at once (same draws in the same order always).

    Returns:
        ``(late_ms, hold_for, dup_after, bad)``: lateness in ms (0 = on time); records to wait
        before a held-back record is sent (0 = in order); records after which a duplicate follows
        (-1 = none); index into ``imp.malformed_kinds`` (-1 = well-formed).
    """
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
        bad[mal] = np_rng.integers(0, len(imp.malformed_kinds), int(mal.sum()))
    return late_ms, hold_for, dup_after, bad


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
    """What was sent, one entry per record in send order (``seq`` is the index), as columns.

    ``duplicate_of`` is -1 for an original; ``event_time_ms`` holds 0 where ``has_event_time``
    is false (the record carries no usable event time).
    """

    event_id: np.ndarray
    reason: np.ndarray
    duplicate_of: np.ndarray
    late_by_ms: np.ndarray
    out_of_order: np.ndarray
    send_ms: np.ndarray
    event_time_ms: np.ndarray
    has_event_time: np.ndarray
    visitor: np.ndarray
    page: np.ndarray
    event_type: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return len(self.event_id)

    @staticmethod
    def concat(parts: list[dict[str, np.ndarray]]) -> Sent:
        """Joins per-batch columns (dicts named like the fields)."""
        names = list(Sent.__dataclass_fields__)
        if not parts:
            return Sent(*(np.zeros(0, dtype=_SENT_TYPES[n]) for n in names))
        return Sent(*(np.concatenate([part[n] for part in parts]) for n in names))


_SENT_TYPES: dict[str, Any] = {
    "event_id": object, "reason": object, "duplicate_of": np.int64, "late_by_ms": np.int64,
    "out_of_order": bool, "send_ms": np.int64, "event_time_ms": np.int64,
    "has_event_time": bool, "visitor": np.int64, "page": np.int64, "event_type": np.int64,
    "size": np.int64,
}  # fmt: skip


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
        send_many: SendMany,
        limit: int | None = None,
        end_ms: int | None = None,
        tick: Callable[[int], None] | None = None,
    ) -> Sent:
        """Sends records until ``limit`` records went out or nominal time reaches ``end_ms``.

        Records still held back at the end are not sent (a stop is a stop). ``send_many``
        takes keys, values and the CRC32 of each key (or None), in send order.

        Returns:
            What was sent, in send order.
        """
        if self.realtime:
            return self._run_per_record(send_many, limit, end_ms, tick)
        return self._run_bulk(send_many, limit, tick)

    def _run_bulk(
        self,
        send_many: SendMany,
        limit: int | None,
        tick: Callable[[int], None] | None,
    ) -> Sent:
        """As fast as possible: a time slice at a time, the send order worked out in bulk.

        Each record gets a sort key: four times its position among the originals, plus
        ``4 * hold + 2`` when held back (sent after the next ``hold`` records), and a
        duplicate the key of its original plus ``4 * after + 1`` (sent after ``after`` more
        records). Keys beyond the slice wait for the next one.
        """
        imp, np_rng, m = self.imp, self.np_rng, self.model
        limit = limit if limit is not None else 2**62
        kinds = imp.malformed_kinds
        sha256 = hashlib.sha256
        type_json = [',"event_type":"' + t + '"' for t in EVENT_TYPES]
        v_const, v_key = m.v_const, m.v_key
        offsets = np.asarray(sorted(TZ_SUFFIX), dtype=np.int64)
        suffixes = np.asarray([TZ_SUFFIX[o] for o in offsets.tolist()])
        parts: list[dict[str, np.ndarray]] = []
        carried: dict[str, np.ndarray] | None = None
        dup_seq: dict[int, int] = {}  # position of an original with a copy -> its seq
        emitted = 0
        base = 0  # position of the slice's first original
        for views in self.chunks:
            n = len(views.nominal_ms)
            nominal = views.nominal_ms
            late_ms, hold_for, dup_after, bad = draw_imperfections(np_rng, imp, n)
            hex_ids = np_rng.bytes(16 * n).hex()
            vis = views.visitor
            vis_list = vis.tolist()
            tz = m.v_tz[vis]
            rich = m.v_rich[vis]
            event_ms = nominal - late_ms
            local = (event_ms + tz * 60_000).astype("datetime64[ms]")
            texts = np.char.add(
                np.datetime_as_string(local, unit="ms"), suffixes[np.searchsorted(offsets, tz)]
            )
            event_id = np.full(n, None, dtype=object)
            tails = np.full(n, "", dtype=object)
            rich_at = np.flatnonzero(rich).tolist()
            if rich_at:
                ids = [hex_ids[32 * i : 32 * i + 32] for i in rich_at]
                event_id[rich_at] = ids
                tails[rich_at] = [
                    f'{type_json[et]},"event_id":"{eid}"{EXTRA_JSON[ex]}'
                    for et, eid, ex in zip(
                        views.event_type[rich_at].tolist(), ids, views.extra[rich_at].tolist(),
                        strict=True,
                    )
                ]  # fmt: skip
            values = [
                f'{{"url":{url},"referrer":{ref}{const}{tail},"event_time":"{text}"}}'.encode()
                for url, ref, const, tail, text in zip(
                    views.url.tolist(), views.referrer.tolist(), map(v_const.__getitem__, vis_list),
                    tails.tolist(), texts.tolist(), strict=True,
                )
            ]  # fmt: skip
            reason = np.full(n, None, dtype=object)
            has_time = np.ones(n, dtype=bool)
            for i in np.flatnonzero(bad >= 0).tolist():
                kind = kinds[bad[i]]
                value, when = self._malformed(kind, json.loads(values[i]), int(event_ms[i]))
                values[i] = value
                reason[i] = kind
                event_id[i] = sha256(value).hexdigest()
                dup_after[i] = -1
                if when is None:
                    has_time[i] = False
                else:
                    event_ms[i] = when
            for i in np.flatnonzero(~rich & (bad < 0)).tolist():
                event_id[i] = sha256(values[i]).hexdigest()
            value_arr = np.empty(n, dtype=object)
            value_arr[:] = values
            position = base + np.arange(n, dtype=np.int64)
            order_key = 4 * position + np.where(hold_for > 0, 4 * hold_for + 2, 0)
            copies = np.flatnonzero(dup_after >= 0)
            src = np.concatenate((np.arange(n), copies))
            is_copy = np.zeros(len(src), dtype=bool)
            is_copy[n:] = True
            items = {
                "key": np.concatenate((order_key, order_key[copies] + 4 * dup_after[copies] + 1)),
                "origin": position[src],
                "copy": is_copy,
                "has_copy": (dup_after >= 0)[src] & ~is_copy,
                "value": value_arr[src],
                "event_id": event_id[src],
                "reason": np.where(is_copy, None, reason[src]),
                "late_by_ms": late_ms[src],
                "out_of_order": (hold_for[src] > 0) & ~is_copy,
                "send_ms": nominal[src],
                "event_time_ms": event_ms[src],
                "has_event_time": has_time[src],
                "visitor": vis[src],
                "page": views.page[src],
                "event_type": views.event_type[src],
            }
            base += n
            if carried is not None:
                items = {k: np.concatenate((carried[k], v)) for k, v in items.items()}
            order = np.argsort(items["key"], kind="stable")
            due = int(np.searchsorted(items["key"][order], 4 * base))
            later, order = order[due:], order[:due]
            carried = {k: v[later] for k, v in items.items()} if len(later) else None
            order = order[: max(0, limit - emitted)]
            batch = {k: v[order] for k, v in items.items()}
            count = len(order)
            dup_of = np.full(count, -1, dtype=np.int64)
            for j in np.flatnonzero(batch["has_copy"] | batch["copy"]).tolist():
                origin = int(batch["origin"][j])
                if batch["copy"][j]:
                    dup_of[j] = dup_seq.pop(origin)
                else:
                    dup_seq[origin] = emitted + j
            out_values = batch["value"].tolist()
            visitors = batch["visitor"]
            send_many(
                list(map(v_key.__getitem__, visitors.tolist())), out_values, m.v_crc[visitors]
            )
            parts.append(
                {
                    "event_id": batch["event_id"], "reason": batch["reason"],
                    "duplicate_of": dup_of, "late_by_ms": batch["late_by_ms"],
                    "out_of_order": batch["out_of_order"], "send_ms": batch["send_ms"],
                    "event_time_ms": np.where(batch["has_event_time"], batch["event_time_ms"], 0),
                    "has_event_time": batch["has_event_time"], "visitor": visitors,
                    "page": batch["page"], "event_type": batch["event_type"],
                    "size": np.fromiter(map(len, out_values), dtype=np.int64, count=count),
                }
            )  # fmt: skip
            emitted += count
            if tick is not None:
                tick(emitted)
            if emitted >= limit:
                break
        return Sent.concat(parts)

    def _run_per_record(
        self,
        send_many: SendMany,
        limit: int | None = None,
        end_ms: int | None = None,
        tick: Callable[[int], None] | None = None,
    ) -> Sent:
        """Real time: record by record, each sent at its nominal time by the clock."""
        imp, np_rng = self.imp, self.np_rng
        ids: list[Any] = []
        reasons: list[Any] = []
        dups: list[int] = []
        lates: list[int] = []
        ooos: list[bool] = []
        sends: list[int] = []
        etimes: list[int | None] = []
        visitors: list[int] = []
        pages: list[int] = []
        types: list[int] = []
        sizes: list[int] = []

        def result() -> Sent:
            return Sent(
                np.asarray(ids, dtype=object), np.asarray(reasons, dtype=object),
                np.asarray(dups, dtype=np.int64), np.asarray(lates, dtype=np.int64),
                np.asarray(ooos, dtype=bool), np.asarray(sends, dtype=np.int64),
                np.asarray([0 if t is None else t for t in etimes], dtype=np.int64),
                np.asarray([t is not None for t in etimes], dtype=bool),
                np.asarray(visitors, dtype=np.int64), np.asarray(pages, dtype=np.int64),
                np.asarray(types, dtype=np.int64), np.asarray(sizes, dtype=np.int64),
            )  # fmt: skip

        m = self.model
        v_const, v_key = m.v_const, m.v_key
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
            send_many([key], [value], None)
            (event_id, reason, dup_of, late, ooo, send_ms, event_ms, vi, pg, et) = facts
            ids.append(event_id)
            reasons.append(reason)
            dups.append(-1 if dup_of is None else dup_of)
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
            v_rich, v_tz = m.v_rich.tolist(), m.v_tz.tolist()
            n = len(views.nominal_ms)
            nominal = views.nominal_ms
            late_ms, hold_for, dup_after, bad = draw_imperfections(np_rng, imp, n)
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
                    return result()
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
        return result()

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
