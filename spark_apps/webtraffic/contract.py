"""The event contract: what a valid event is, how it is identified, and why one is rejected.

Shared by the traffic simulator (which writes the ground-truth ledger) and by the silver layer
(which implements the same rules in Spark). The two implementations are independent code; the
rules here are their common specification, so a test comparing them is meaningful.

Wire shape (the production tracker's, shared/DESIGN.md §3): a JSON object with ``url``,
``referrer``, ``user_id``, ``academy_id``, ``user_agent{family, major, minor, patch,
device{family, major, minor, patch}, os{family, major, minor, patch}}``, ``headers``, ``host``,
``ip``, ``event_time``; optionally ``event_id``, ``event_type``, ``anonymous_id``. Unknown extra
fields are allowed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

MAX_PAYLOAD_BYTES = 32 * 1024
"""A value larger than this (in bytes) is rejected as ``oversized``."""

MAX_FUTURE_SKEW = timedelta(hours=1)
"""An ``event_time`` later than the Kafka timestamp plus this is rejected as
``future_event_time``. Measured against the Kafka timestamp, not the clock, so a replay of old
data gives the same verdict as the first run."""

DEFAULT_EVENT_TYPE = "page_view"

EVENT_TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
)
"""Accepted ``event_time`` text: ISO 8601 date and time with ``T``, optional fraction (up to
microseconds), optional ``Z`` or ``±HH:MM`` offset (none means UTC). It must also be a real
calendar date and time."""

# Reason codes, in precedence order: a record with several defects is filed under the first.
REASONS: dict[str, str] = {
    "invalid_utf8": "the value is not valid UTF-8",
    "oversized": f"the value is larger than {MAX_PAYLOAD_BYTES} bytes",
    "not_json": "the value is not JSON",
    "not_object": "the value is JSON but not an object",
    "wrong_type": "a known field has the wrong JSON type",
    "missing_event_time": "event_time is missing or null",
    "bad_event_time": "event_time is not an ISO 8601 timestamp",
    "future_event_time": "event_time is more than 1 hour after the Kafka timestamp",
    "missing_url": "url is missing or empty",
    "missing_host": "host is missing or empty",
    "invalid_ip": "ip is missing or not an IPv4/IPv6 address",
}
REASON_CODES: tuple[str, ...] = tuple(REASONS)

# JSON types of the known fields (besides the nested user_agent, checked separately).
FIELD_TYPES: dict[str, str] = {
    "url": "string",
    "referrer": "string",
    "user_id": "integer",
    "academy_id": "integer",
    "user_agent": "object",
    "headers": "object",
    "host": "string",
    "ip": "string",
    "event_time": "string",
    "event_id": "string",
    "event_type": "string",
    "anonymous_id": "string",
}
USER_AGENT_PARTS = ("family", "major", "minor", "patch")


def fingerprint(raw_value: bytes) -> str:
    """Returns the event id of a record without ``event_id``: SHA-256 of the raw value, hex.

    Exact duplicates (a retrying producer resends the same bytes) get the same id, so
    deduplication by event id removes them.
    """
    return hashlib.sha256(raw_value).hexdigest()


def user_agent_signature(user_agent: Mapping[str, Any] | None) -> str:
    """Returns the user-agent part of the anonymous visitor hash.

    ``family|major|minor|patch|os.family|os.major|device.family``, a missing part as empty.
    """
    ua = user_agent or {}
    os_ = ua.get("os") or {}
    device = ua.get("device") or {}
    parts = [ua.get(p) for p in USER_AGENT_PARTS] + [os_.get("family"), os_.get("major")]
    parts.append(device.get("family"))
    return "|".join("" if p is None else str(p) for p in parts)


def visitor_key(
    user_id: int | None,
    anonymous_id: str | None,
    ip: str | None,
    user_agent: Mapping[str, Any] | None,
) -> str:
    """Returns the key that sessions group by.

    ``u:<user_id>`` for a logged-in visitor, else ``a:<anonymous_id>`` (the tracker's cookie id),
    else ``h:`` + SHA-256 hex of ``ip|<user_agent_signature>``, so anonymous visitors without a
    cookie do not collapse into one session.
    """
    if user_id is not None:
        return f"u:{user_id}"
    if anonymous_id:
        return f"a:{anonymous_id}"
    material = f"{ip or ''}|{user_agent_signature(user_agent)}"
    return "h:" + hashlib.sha256(material.encode("utf-8")).hexdigest()
