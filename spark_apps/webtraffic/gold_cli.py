"""``webtraffic gold latest``: the newest closed minutes of ``gold.traffic_minute``, per host.

Reads the table with pyiceberg (no Spark, returns in about a second), so ``make run`` can show the
whole path moving while the streaming app runs.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from datetime import datetime
from typing import Any

from webtraffic.settings import Settings


def latest_minutes(settings: Settings, minutes: int = 5) -> list[dict[str, Any]]:
    """Totals per window and host of the last ``minutes`` windows written, newest first."""
    from pyiceberg.exceptions import NoSuchTableError

    from webtraffic.catalog import load_catalog
    from webtraffic.tables import GOLD_TRAFFIC_MINUTE

    try:
        table = load_catalog(settings).load_table(GOLD_TRAFFIC_MINUTE.name)
    except NoSuchTableError:
        return []
    if table.current_snapshot() is None:
        return []
    # Windows are appended in event-time order: the newest snapshots hold the newest windows.
    columns = ("window_start", "host", "events", "page_views", "unique_visitors", "bot_events",
               "computed_ts")  # fmt: skip
    rows = table.scan(selected_fields=columns).to_arrow().to_pylist()
    starts = sorted({r["window_start"] for r in rows}, reverse=True)[:minutes]
    keep = set(starts)
    totals: dict[tuple[datetime, str], dict[str, Any]] = defaultdict(
        lambda: {"events": 0, "page_views": 0, "unique_visitors": 0, "bot_events": 0}
    )
    for r in rows:
        if r["window_start"] in keep:
            t = totals[(r["window_start"], r["host"])]
            for name in ("events", "page_views", "unique_visitors", "bot_events"):
                t[name] += r[name]
            t["computed_ts"] = max(t.get("computed_ts") or r["computed_ts"], r["computed_ts"])
    return [
        {"window_start": start, "host": host, **values}
        for (start, host), values in sorted(totals.items(), key=lambda kv: (-kv[0][0].timestamp(),
                                                                            kv[0][1]))
    ]  # fmt: skip


def _cmd_gold(args: argparse.Namespace, settings: Settings) -> int:
    rows = latest_minutes(settings, args.minutes)
    if args.json:
        import json

        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(
            "no closed minute yet in gold.traffic_minute (a window is written once the "
            "30 s watermark passes its end; is `webtraffic stream all` running?)"
        )
        return 0
    print(f"{'minute (UTC)':16}  {'host':28} {'events':>8} {'views':>8} {'visitors':>9} "
          f"{'bots':>6}  written")  # fmt: skip
    for r in rows:
        print(
            f"{r['window_start']:%Y-%m-%d %H:%M}  {r['host']:28} {r['events']:>8,} "
            f"{r['page_views']:>8,} {r['unique_visitors']:>9,} {r['bot_events']:>6,}  "
            f"{r['computed_ts']:%H:%M:%S}"
        )
    print("(visitors: the sum over the country x region x city x device rows of the minute)")
    return 0


def register(subparsers: Any) -> None:
    """Adds the ``gold`` command."""
    p = subparsers.add_parser(
        "gold",
        help="print the latest gold minute counts per host",
        description="Print the newest closed 1-minute windows of gold.traffic_minute, per host.",
    )
    p.add_argument("action", choices=("latest",))
    p.add_argument("--minutes", type=int, default=5, help="how many windows (default 5)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_gold)
