"""From page views to the records a tracker really sends: event times, ids and imperfections.

Every imperfection is decided here with the simulator's seeded random source and written down in
the record's ledger fields, so the ledger is the ground truth of what was sent and why.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from webtraffic.contract import MAX_PAYLOAD_BYTES, REASON_CODES, fingerprint
from webtraffic.simulator.traffic import PageView

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


@dataclass(slots=True)
class Record:
    """One Kafka record and its ledger facts."""

    key: bytes
    value: bytes
    event_id: str
    valid: bool
    reason: str | None
    nominal_ms: int
    event_time_ms: int | None
    late_by_ms: int
    visitor_key: str
    host: str
    path: str
    event_type: str
    is_bot: bool
    device_class: str
    ip: str
    out_of_order: bool = False
    duplicate_of: int | None = None
    seq: int = -1


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


class RecordStream:
    """Turns page views into records in send order, applying the imperfections.

    Args:
        page_views: Page views in nominal-time order.
        rng: The simulator's seeded random source.
        imperfections: Rates of each imperfection.
        clock: Maps a page view's nominal time to the time it is sent (epoch ms); in real-time
            mode it waits for that moment and returns the actual time.
    """

    def __init__(
        self,
        page_views: Iterator[PageView],
        rng: random.Random,
        imperfections: Imperfections,
        clock: Callable[[int], int],
    ) -> None:
        self.page_views = page_views
        self.rng = rng
        self.imp = imperfections
        self.clock = clock
        self._held: list[tuple[int, int, Record]] = []  # (release after n emitted, tie, record)
        self._emitted = 0
        self._tie = 0

    def records(self, stop: Callable[[int, int], bool]) -> Iterator[Record]:
        """Yields records in send order until ``stop(records_emitted, nominal_ms)`` is true.

        Sequence numbers (send order) are assigned here. Records still held back when the
        stream ends go out last, as long as ``stop`` allows.
        """
        for record in self._send_order(stop):
            if stop(self._emitted, record.nominal_ms):
                return
            record.seq = self._emitted
            self._emitted += 1
            yield record
            if (
                record.valid
                and record.duplicate_of is None
                and self.imp.duplicate_rate
                and self.rng.random() < self.imp.duplicate_rate
            ):
                # A retrying producer: the same bytes again, shortly after.
                copy = dataclasses.replace(
                    record, duplicate_of=record.seq, seq=-1, out_of_order=False
                )
                self._hold(copy, self.rng.randint(0, 3))

    def _send_order(self, stop: Callable[[int, int], bool]) -> Iterator[Record]:
        for view in self.page_views:
            if stop(self._emitted, view.nominal_ms):
                break
            yield from self._due()
            record = self._render(view)
            if self.imp.out_of_order_rate and self.rng.random() < self.imp.out_of_order_rate:
                record.out_of_order = True
                self._hold(record, self.rng.randint(1, self.imp.out_of_order_max_records))
            else:
                yield record
        while self._held:
            self._held.sort(key=lambda h: (h[0], h[1]))
            yield self._held.pop(0)[2]

    def _hold(self, record: Record, after: int) -> None:
        self._tie += 1
        self._held.append((self._emitted + after, self._tie, record))

    def _due(self) -> Iterator[Record]:
        while True:
            due = [h for h in self._held if h[0] <= self._emitted]
            if not due:
                return
            first = min(due, key=lambda h: (h[0], h[1]))
            self._held.remove(first)
            yield first[2]

    # --- rendering -------------------------------------------------------------------------

    def _render(self, view: PageView) -> Record:
        rng, imp = self.rng, self.imp
        visitor = view.visitor
        sent_ms = self.clock(view.nominal_ms)
        late_by = 0
        if imp.late_rate and rng.random() < imp.late_rate:
            delay_s = rng.lognormvariate(math.log(imp.late_median_s), imp.late_sigma)
            late_by = int(min(delay_s, imp.late_max_s) * 1000)
        event_ms = sent_ms - late_by
        event_time = format_event_time(event_ms, visitor.tz_offset_min)
        event_id = f"{rng.getrandbits(128):032x}" if visitor.rich_tracker else None
        record = Record(
            key=visitor.key.encode(),
            value=b"",
            event_id="",
            valid=True,
            reason=None,
            nominal_ms=sent_ms,
            event_time_ms=event_ms,
            late_by_ms=late_by,
            visitor_key=visitor.key,
            host=visitor.site.host,
            path=view.path,
            event_type=view.event_type,
            is_bot=visitor.is_bot,
            device_class=visitor.device_class,
            ip=visitor.ip,
        )
        if imp.malformed_rate and rng.random() < imp.malformed_rate:
            kind = rng.choice(imp.malformed_kinds)
            payload = view.payload()
            payload["event_time"] = event_time
            if event_id is not None:
                payload["event_id"] = event_id
            record.value, record.event_time_ms = self._malformed(kind, payload, event_ms)
            record.valid, record.reason = False, kind
            record.event_id = fingerprint(record.value)
            return record
        record.value = view.encode(event_time, event_id)
        record.event_id = event_id or fingerprint(record.value)
        return record

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
