"""``webtraffic simulate``: realistic website traffic with a ground-truth ledger."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from webtraffic.errors import WebtrafficError
from webtraffic.settings import Settings

EXAMPLES = """\
examples:
  webtraffic simulate --events 100000 --span 3600 --ledger .state/ledgers/run.parquet
  webtraffic simulate --rate 50 --duration 600
  webtraffic simulate --events 5000 --seed 7 --out sample.jsonl --ledger sample.ledger.jsonl
  webtraffic simulate --replay captured.jsonl --ledger replay.parquet
  webtraffic simulate --events 20000 --no-imperfections
  webtraffic simulate --events 1000000 --workers 2 --ledger .state/ledgers/big.parquet
"""


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _timestamp(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def register(subparsers: Any) -> None:
    """Adds the ``simulate`` command."""
    p = subparsers.add_parser(
        "simulate",
        help="produce realistic website traffic (and a ground-truth ledger)",
        description="Produce website events in the production tracker's shape to Kafka or a "
        "file, with configurable imperfections, and write a ledger of every record.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pace = p.add_argument_group("pacing (choose --events or --rate/--duration, or --replay)")
    mode = pace.add_mutually_exclusive_group(required=True)
    mode.add_argument("--events", type=_count, help="produce N records as fast as possible")
    mode.add_argument("--rate", type=_positive, help="records per second in real time")
    mode.add_argument("--replay", type=Path, metavar="FILE", help="send a JSON-lines file as is")
    pace.add_argument("--duration", type=_positive, help="seconds of real-time traffic")
    pace.add_argument("--start", type=_timestamp, help="nominal start with --events (ISO 8601)")
    pace.add_argument("--span", type=_positive, default=3600.0, help="seconds --events spans")
    pace.add_argument(
        "--workers", type=_count, default=1,
        help="processes for --events (default 1): each sends a disjoint share of the visitors "
        "(seeds derived from --seed; to Kafka, each owns a share of the partitions); the "
        "ledgers are merged, seq ordered by (worker, send order)",
    )  # fmt: skip

    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, metavar="FILE", help="write JSON lines instead of Kafka")
    out.add_argument("--topic", help="Kafka topic (default: the configured events topic)")
    out.add_argument("--ledger", type=Path, metavar="PATH", help=".parquet or JSON lines")
    out.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    out.add_argument("--json", action="store_true", help="print the summary as JSON")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress line (default: only on a terminal)")  # fmt: skip

    imp = p.add_argument_group("imperfections (rates per record)")
    imp.add_argument("--no-imperfections", action="store_true", help="perfect traffic")
    imp.add_argument("--late-rate", type=_rate, default=0.05)
    imp.add_argument("--late-median", type=_positive, default=8.0, help="seconds (log-normal)")
    imp.add_argument("--late-max", type=_positive, default=600.0, help="seconds, cap of the tail")
    imp.add_argument("--out-of-order-rate", type=_rate, default=0.02)
    imp.add_argument("--duplicate-rate", type=_rate, default=0.01)
    imp.add_argument("--malformed-rate", type=_rate, default=0.02)

    aud = p.add_argument_group("audience (shares of visitors)")
    aud.add_argument("--bot-share", type=_rate, default=0.05)
    aud.add_argument("--logged-in-share", type=_rate, default=0.2)
    aud.add_argument("--non-routable-share", type=_rate, default=0.03)
    aud.add_argument("--ipv6-share", type=_rate, default=0.2)
    p.set_defaults(handler=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from webtraffic.simulator.records import Imperfections
    from webtraffic.simulator.run import FileSink, KafkaSink, replay, simulate
    from webtraffic.simulator.traffic import TrafficProfile

    if args.rate is not None and args.duration is None:
        raise WebtrafficError("--rate needs --duration (seconds)")
    if args.rate is None and args.duration is not None:
        raise WebtrafficError("--duration goes with --rate")
    if args.workers > 1 and args.events is None:
        raise WebtrafficError("--workers goes with --events")
    if args.replay is not None and args.out is not None:
        raise WebtrafficError("--replay sends to Kafka; it cannot be combined with --out")

    if args.replay is not None:
        summary, _ = replay(
            KafkaSink(settings, args.topic), args.replay, args.ledger, progress=args.progress
        )
    else:
        if args.no_imperfections:
            imperfections = Imperfections.none()
        else:
            imperfections = Imperfections(
                late_rate=args.late_rate,
                late_median_s=args.late_median,
                late_max_s=args.late_max,
                out_of_order_rate=args.out_of_order_rate,
                duplicate_rate=args.duplicate_rate,
                malformed_rate=args.malformed_rate,
            )
        profile = TrafficProfile(
            bot_share=args.bot_share,
            logged_in_share=args.logged_in_share,
            non_routable_share=args.non_routable_share,
            ipv6_share=args.ipv6_share,
        )
        sink = FileSink(args.out) if args.out else KafkaSink(settings, args.topic)
        try:
            summary, _ = simulate(
                sink,
                seed=args.seed,
                events=args.events,
                start=args.start,
                span_s=args.span,
                rate=args.rate,
                duration_s=args.duration,
                profile=profile,
                imperfections=imperfections,
                ledger_path=args.ledger,
                progress=args.progress,
                workers=args.workers,
            )
        except ValueError as exc:
            raise WebtrafficError(str(exc)) from None
    if args.json:
        print(json.dumps({**summary.__dict__, "rate": summary.rate}, default=str))
    else:
        print(summary.line())
    return 0
