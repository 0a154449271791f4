"""Expected results computed from a ledger: the independent oracle of the pipeline's tests.

Nothing here imports the pipeline's transforms; the rules come from ``webtraffic.contract``
and are implemented again, in plain Python, so a test that compares the two means something.

Watermark model: Spark updates a watermark between micro-batches to ``max(event time seen in
earlier batches) - delay``; a row whose window (or session) would end at or before the current
watermark is dropped. :func:`watermark_split` reproduces that either per record in send order
(``batch_of=None``: the strictest case, every record is its own batch) or for given micro-batch
assignments, so completeness can be measured exactly.

Effective event time: windows, sessions and the watermark are all on
``min(event_time_ms, kafka_ts_ms)`` (:func:`effective_time_ms`): an event claiming a time after
its Kafka timestamp (a client clock running ahead, valid up to ``MAX_FUTURE_SKEW``) counts at
its arrival. For on-time and late events this is the event time.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from webtraffic.contract import (
    EVENT_TIME_PATTERN,
    FIELD_TYPES,
    MAX_FUTURE_SKEW,
    MAX_PAYLOAD_BYTES,
    USER_AGENT_PARTS,
)

MINUTE_MS = 60_000
SESSION_GAP_MS = 5 * MINUTE_MS
WATERMARK_DELAY_MS = 30_000
_EVENT_TIME_RE = re.compile(EVENT_TIME_PATTERN)

Row = Mapping[str, Any]


# --- validation (reference implementation of the contract) -------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse_event_time_ms(text: str) -> int | None:
    """Parses an ``event_time`` the contract accepts; None if it does not."""
    if not _EVENT_TIME_RE.match(text):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:  # no offset means UTC
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _has_wrong_type(obj: Mapping[str, Any]) -> bool:
    for name, expected in FIELD_TYPES.items():
        if name in obj and obj[name] is not None and _json_type(obj[name]) != expected:
            return True
    ua = obj.get("user_agent")
    if isinstance(ua, dict):
        for part in USER_AGENT_PARTS:
            if _json_type(ua.get(part)) not in ("null", "string"):
                return True
        for nested in ("device", "os"):
            sub = ua.get(nested)
            if sub is None:
                continue
            if not isinstance(sub, dict):
                return True
            if any(_json_type(sub.get(p)) not in ("null", "string") for p in USER_AGENT_PARTS):
                return True
    headers = obj.get("headers")
    return isinstance(headers, dict) and any(not isinstance(v, str) for v in headers.values())


def classify(value: bytes, kafka_ts_ms: int) -> str | None:
    """Returns the reason code the pipeline must give ``value``, or None if it is valid.

    Args:
        value: The raw Kafka value.
        kafka_ts_ms: The record's Kafka timestamp (the reference for ``future_event_time``).
    """
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    if len(value) > MAX_PAYLOAD_BYTES:
        return "oversized"
    try:
        obj = json.loads(text)
    except ValueError:
        return "not_json"
    if not isinstance(obj, dict):
        return "not_object"
    if _has_wrong_type(obj):
        return "wrong_type"
    event_time = obj.get("event_time")
    if event_time is None:
        return "missing_event_time"
    event_ms = parse_event_time_ms(event_time)
    if event_ms is None:
        return "bad_event_time"
    if event_ms > kafka_ts_ms + MAX_FUTURE_SKEW.total_seconds() * 1000:
        return "future_event_time"
    if not obj.get("url"):
        return "missing_url"
    if not obj.get("host"):
        return "missing_host"
    ip = obj.get("ip")
    try:
        ipaddress.ip_address(ip or "")
    except ValueError:
        return "invalid_ip"
    if "%" in ip:  # zone ids are not addresses of a visitor
        return "invalid_ip"
    return None


# --- expected layer contents -------------------------------------------------------------------


def valid_unique(ledger: Iterable[Row]) -> list[Row]:
    """The records silver must hold: valid and not a repeat of an earlier one, in send order."""
    seen: set[str] = set()
    out = []
    for row in ledger:
        if not row["valid"] or row["duplicate_of"] is not None or row["event_id"] in seen:
            continue
        seen.add(row["event_id"])
        out.append(row)
    return out


def quarantined(ledger: Iterable[Row]) -> list[Row]:
    """The records the quarantine must hold, each with ``reason``."""
    return [row for row in ledger if not row["valid"]]


def effective_time_ms(row: Row) -> int:
    """The time gold windows, sessions and watermarks ``row`` on: event time, capped at Kafka's.

    ``min(event_time_ms, kafka_ts_ms)``; the event time alone when the row has no Kafka
    timestamp (a ledger written for a file sink, a hand-written row).
    """
    kafka_ts_ms = row.get("kafka_ts_ms")
    event_ms: int = row["event_time_ms"]
    return event_ms if kafka_ts_ms is None else min(event_ms, kafka_ts_ms)


def window_start_ms(event_ms: int, size_ms: int = MINUTE_MS) -> int:
    """Start of the tumbling window holding ``event_ms`` (windows are aligned to the epoch)."""
    return event_ms - event_ms % size_ms


def watermark_split(
    events: Iterable[Row],
    delay_ms: int = WATERMARK_DELAY_MS,
    end_of: Callable[[int], int] | None = None,
    batch_of: Callable[[Row], int] | None = None,
) -> tuple[list[Row], list[Row]]:
    """Splits events into those a watermarked stateful operator admits and those it drops.

    Args:
        events: Valid unique events in processing order (send order, or Kafka order).
        delay_ms: Watermark delay (30 s for the gold aggregations).
        end_of: Maps an effective event time (:func:`effective_time_ms`) to the end of the state
            it would join; the event is dropped when that end is at or before the watermark.
            Default: the end of its 1-minute window.
        batch_of: Micro-batch number of an event (non-decreasing in processing order). None:
            each event is its own batch, the strictest watermark.

    Returns:
        ``(admitted, dropped)``, each in processing order.
    """
    end_of = end_of or (lambda ms: window_start_ms(ms) + MINUTE_MS)
    admitted: list[Row] = []
    dropped: list[Row] = []
    watermark = -(2**62)
    max_seen = -(2**62)
    current_batch: int | None = None
    batch_max = -(2**62)
    for index, row in enumerate(events):
        batch = batch_of(row) if batch_of else index
        if batch != current_batch:
            max_seen = max(max_seen, batch_max)
            watermark = max(watermark, max_seen - delay_ms)
            current_batch, batch_max = batch, -(2**62)
        event_ms = effective_time_ms(row)
        batch_max = max(batch_max, event_ms)
        (admitted if end_of(event_ms) > watermark else dropped).append(row)
    return admitted, dropped


@dataclass(frozen=True)
class MinuteCounts:
    """Expected aggregates of one window and group."""

    events: int
    page_views: int
    unique_visitors: int
    bot_events: int


def minute_counts(
    events: Iterable[Row], dims: tuple[str, ...] = ("host",)
) -> dict[tuple[Any, ...], MinuteCounts]:
    """Per 1-minute window and the given ledger columns: the counts gold must have.

    Windows are on the effective event time (:func:`effective_time_ms`).

    Returns:
        ``{(window_start_ms, *dim_values): MinuteCounts}``.
    """
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for row in events:
        groups[(window_start_ms(effective_time_ms(row)), *(row[d] for d in dims))].append(row)
    return {
        key: MinuteCounts(
            events=len(rows),
            page_views=sum(1 for r in rows if r["event_type"] == "page_view"),
            unique_visitors=len({r["visitor_key"] for r in rows}),
            bot_events=sum(1 for r in rows if r["is_bot"]),
        )
        for key, rows in groups.items()
    }


@dataclass(frozen=True)
class ExpectedSession:
    """A visitor session under the 5-minute inactivity gap."""

    visitor_key: str
    first_event_ms: int
    """Effective event time (:func:`effective_time_ms`) of the first event."""
    last_event_ms: int
    """Effective event time of the last event."""
    events: int
    page_views: int
    distinct_pages: int
    entry_path: str
    exit_path: str

    @property
    def end_ms(self) -> int:
        """End of the session window as Spark reports it: last event plus the gap."""
        return self.last_event_ms + SESSION_GAP_MS


def sessions(events: Iterable[Row], gap_ms: int = SESSION_GAP_MS) -> list[ExpectedSession]:
    """Sessions per visitor key: a gap of more than ``gap_ms`` between events starts a new one.

    This is Spark's ``session_window`` rule: each event opens ``[t, t + gap)`` and a session
    absorbs the next event when that event starts at or before the session's end
    (``MergingSessionsIterator``: ``sessionStart <= currentSessionEnd``), so events exactly
    ``gap_ms`` apart stay in one session (checked on Spark 4.1). Times are effective event times
    (:func:`effective_time_ms`).
    """
    by_visitor: dict[str, list[Row]] = defaultdict(list)
    for row in events:
        by_visitor[row["visitor_key"]].append(row)
    out: list[ExpectedSession] = []
    for key, rows in by_visitor.items():
        rows.sort(key=lambda r: (effective_time_ms(r), r["seq"]))
        current: list[Row] = []
        for row in rows:
            if current and effective_time_ms(row) > effective_time_ms(current[-1]) + gap_ms:
                out.append(_session(key, current))
                current = []
            current.append(row)
        if current:
            out.append(_session(key, current))
    return sorted(out, key=lambda s: (s.visitor_key, s.first_event_ms))


def _session(key: str, rows: list[Row]) -> ExpectedSession:
    return ExpectedSession(
        visitor_key=key,
        first_event_ms=effective_time_ms(rows[0]),
        last_event_ms=effective_time_ms(rows[-1]),
        events=len(rows),
        page_views=sum(1 for r in rows if r["event_type"] == "page_view"),
        distinct_pages=len({r["path"] for r in rows}),
        entry_path=rows[0]["path"],
        exit_path=rows[-1]["path"],
    )
