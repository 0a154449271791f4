"""The streaming apps: thin drivers that wire sources, pure transforms and sinks.

``webtraffic stream bronze|silver|gold|all`` runs the chosen layers' queries in one Spark
application (``all`` spares the 2-core machine a second JVM). ``--available-now`` processes
what is there and exits, layer after layer, so one run carries a backlog all the way through.
SIGTERM and Ctrl-C stop the queries cleanly; a query failure stops the app with a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from webtraffic.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("webtraffic.streaming")

LAYERS: tuple[str, ...] = ("bronze", "silver", "gold")
"""Layers in data-flow order."""

QUERIES: dict[str, tuple[str, ...]] = {
    "bronze": ("bronze_events_raw",),
    "silver": ("silver",),
    "gold": ("gold_events_enriched", "gold_traffic_minute", "gold_sessions"),
}
"""Streaming query names per layer (also the writer ids in snapshot summaries)."""


@dataclass(frozen=True)
class StreamOptions:
    """How the queries run.

    Attributes:
        available_now: Process what is available, then stop (tests, catch-up, benchmarks).
        max_offsets_per_trigger: Kafka records per bronze micro-batch (silver and the enriched
            stream read up to four times as many rows). A cap, not a batch size: large enough
            that a stream behind its source catches up with bigger batches, whose fixed costs
            (commits, planning) are paid once for more rows.
        trigger_interval: Micro-batch interval of long-running queries.
        gold_max_rows_per_trigger: Rows of ``gold.events_enriched`` per micro-batch of the gold
            aggregations; None reads everything new in one batch (tests make the batch
            boundaries known this way: one available-now run, one aggregation batch).
    """

    available_now: bool = False
    max_offsets_per_trigger: int = 50_000
    trigger_interval: str = "5 seconds"
    gold_max_rows_per_trigger: int | None = None

    def trigger(self) -> dict[str, object]:
        """``DataStreamWriter.trigger`` arguments."""
        if self.available_now:
            return {"availableNow": True}
        return {"processingTime": self.trigger_interval}


def checkpoint(settings: Settings, query_name: str) -> str:
    """Checkpoint folder of a query."""
    return f"{settings.checkpoint_root.rstrip('/')}/{query_name}"


def start_bronze(
    spark: SparkSession, settings: Settings, options: StreamOptions
) -> list[StreamingQuery]:
    """Kafka -> ``bronze.events_raw``."""
    from webtraffic import io
    from webtraffic.bronze import bronze_from_kafka
    from webtraffic.tables import BRONZE_EVENTS_RAW

    raw = io.read_kafka_stream(spark, settings, options.max_offsets_per_trigger)
    (name,) = QUERIES["bronze"]
    query = io.write(
        bronze_from_kafka(raw),
        BRONZE_EVENTS_RAW.name,
        query_name=name,
        checkpoint=checkpoint(settings, name),
        trigger=options.trigger(),
    )
    assert query is not None
    return [query]


def start_silver(
    spark: SparkSession, settings: Settings, options: StreamOptions
) -> list[StreamingQuery]:
    """``bronze.events_raw`` -> ``silver.events`` and ``silver.events_quarantine``.

    One query: each bronze row is validated once, then split between the two tables.
    """
    from pyspark.sql import functions as F

    from webtraffic import io, silver
    from webtraffic.tables import BRONZE_EVENTS_RAW, SILVER_EVENTS, SILVER_QUARANTINE

    (name,) = QUERIES["silver"]
    bronze = io.read_table_stream(
        spark, BRONZE_EVENTS_RAW.name, 4 * options.max_offsets_per_trigger
    ).where(F.col("kafka_topic") == settings.kafka.topic)
    validated = silver.deduplicate(silver.validate(bronze, observe_as=f"{name}_validation"))
    query = io.write(
        validated,
        {SILVER_EVENTS.name: silver.normalise, SILVER_QUARANTINE.name: silver.quarantine},
        query_name=name,
        checkpoint=checkpoint(settings, name),
        trigger=options.trigger(),
    )
    assert query is not None
    return [query]


def start_gold_enriched(
    spark: SparkSession, settings: Settings, options: StreamOptions
) -> list[StreamingQuery]:
    """``silver.events`` -> ``gold.events_enriched`` (geo looked up per micro-batch)."""
    from pyspark.sql import functions as F

    from webtraffic import gold, io
    from webtraffic.geo.enrich import spark_geo_chain
    from webtraffic.tables import GOLD_EVENTS_ENRICHED, SILVER_EVENTS

    name = QUERIES["gold"][0]
    silver_events = io.read_table_stream(
        spark, SILVER_EVENTS.name, 4 * options.max_offsets_per_trigger
    ).where(F.col("kafka_topic") == settings.kafka.topic)
    query = io.write(
        gold.enrich(silver_events),
        GOLD_EVENTS_ENRICHED.name,
        query_name=name,
        checkpoint=checkpoint(settings, name),
        trigger=options.trigger(),
        before_write=gold.geo_step(spark_geo_chain(settings, spark)),
    )
    assert query is not None
    return [query]


MAX_ROWS_UNLIMITED = 2**31 - 1
"""Iceberg's read limit is an int: this is 'everything new'."""


def start_gold_aggregates(
    spark: SparkSession, settings: Settings, options: StreamOptions
) -> list[StreamingQuery]:
    """``gold.events_enriched`` -> ``gold.traffic_minute`` and ``gold.sessions``."""
    from pyspark.sql import functions as F

    from webtraffic import gold, io
    from webtraffic.tables import GOLD_EVENTS_ENRICHED, GOLD_SESSIONS, GOLD_TRAFFIC_MINUTE

    _, minute_name, sessions_name = QUERIES["gold"]
    limit = options.gold_max_rows_per_trigger or MAX_ROWS_UNLIMITED
    queries = []
    for name, table, transform, keys in (
        (minute_name, GOLD_TRAFFIC_MINUTE, gold.traffic_minute, gold.TRAFFIC_KEYS),
        (sessions_name, GOLD_SESSIONS, gold.sessions, gold.SESSION_KEYS),
    ):
        enriched = io.read_table_stream(spark, GOLD_EVENTS_ENRICHED.name, limit).where(
            F.col("kafka_topic") == settings.kafka.topic
        )
        query = io.write(
            transform(enriched, watermark=settings.gold_watermark),
            table.name,
            query_name=name,
            checkpoint=checkpoint(settings, name),
            trigger=options.trigger(),
            key_columns=keys,
        )
        assert query is not None
        queries.append(query)
    return queries


def start_gold(
    spark: SparkSession, settings: Settings, options: StreamOptions
) -> list[StreamingQuery]:
    """The three gold queries: enriched events, then the two aggregations that read them."""
    return start_gold_enriched(spark, settings, options) + start_gold_aggregates(
        spark, settings, options
    )


Starter = Callable[["SparkSession", Settings, StreamOptions], list["StreamingQuery"]]

STARTERS: dict[str, Starter] = {
    "bronze": start_bronze,
    "silver": start_silver,
    "gold": start_gold,
}

AVAILABLE_NOW_STAGES: dict[str, tuple[Starter, ...]] = {
    "gold": (start_gold_enriched, start_gold_aggregates),
}
"""Layers whose queries read each other: in available-now mode they run stage after stage."""


class StreamFailedError(RuntimeError):
    """A streaming query stopped with an exception."""


def _raise_failures(queries: list[StreamingQuery]) -> None:
    for query in queries:
        error = query.exception()
        if error is not None:
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise StreamFailedError(f"query {query.name} failed: {first}")


def run_streams(
    spark: SparkSession,
    settings: Settings,
    layers: list[str],
    options: StreamOptions,
    stop_requested: threading.Event | None = None,
) -> list[str]:
    """Runs the layers' queries in ``spark`` until they finish (available-now) or a stop.

    Args:
        spark: The session (with the project's catalog).
        settings: Project settings (topic, checkpoints).
        layers: Subset of :data:`LAYERS`.
        options: Trigger and rate settings.
        stop_requested: Set it to stop long-running queries cleanly.

    Returns:
        The ids of the queries that ran.

    Raises:
        StreamFailedError: A query failed.
    """
    from webtraffic.progress import ProgressRecorder
    from webtraffic.tables import ensure_tables

    stop = stop_requested or threading.Event()
    ensure_tables(spark)
    recorder = ProgressRecorder(spark).start()
    started: list[StreamingQuery] = []
    ordered = [layer for layer in LAYERS if layer in layers]
    try:
        if options.available_now:
            # Layer after layer: silver's available-now must see all that bronze wrote.
            stages = [s for layer in ordered for s in AVAILABLE_NOW_STAGES.get(
                layer, (STARTERS[layer],))]  # fmt: skip
            for stage in stages:
                queries = stage(spark, settings, options)
                started += queries
                _wait(queries, stop, until_all_done=True)
                _raise_failures(queries)
                if stop.is_set():
                    break
        else:
            for layer in ordered:
                started += STARTERS[layer](spark, settings, options)
            _wait(started, stop, until_all_done=False)
            _raise_failures(started)
    finally:
        for query in started:
            if query.isActive:
                query.stop()
        recorder.close([str(q.id) for q in started])
    return [str(q.id) for q in started]


def _wait(queries: list[StreamingQuery], stop: threading.Event, until_all_done: bool) -> None:
    """Waits in short slices, so that a signal handler can run between them."""
    while not stop.is_set():
        active = [q for q in queries if q.isActive]
        if not active or (not until_all_done and len(active) < len(queries)):
            return
        active[0].awaitTermination(1)


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)


def _cmd_stream(args: argparse.Namespace, settings: Settings) -> int:
    from webtraffic.errors import WebtrafficError
    from webtraffic.spark_session import build_spark_session

    layers = list(LAYERS) if args.layer == "all" else [args.layer]
    options = StreamOptions(
        available_now=args.available_now,
        max_offsets_per_trigger=args.max_offsets,
        trigger_interval=args.trigger_interval,
        gold_max_rows_per_trigger=args.gold_max_rows,
    )
    _configure_logging()
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("%s received: stopping the queries", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    spark = build_spark_session(settings, app_name=f"webtraffic-stream-{args.layer}")
    try:
        ids = run_streams(spark, settings, layers, options, stop)
    except StreamFailedError as exc:
        raise WebtrafficError(str(exc)) from None
    finally:
        spark.stop()
    log.info("stopped %d queries cleanly", len(ids))
    return 0


def register(subparsers: Any) -> None:
    """Adds the ``stream`` command."""
    p = subparsers.add_parser(
        "stream",
        help="run the streaming apps (bronze, silver, gold, or all in one Spark application)",
        description="Run the pipeline's Structured Streaming queries. Long-running unless "
        "--available-now; SIGTERM or Ctrl-C stops cleanly.",
    )
    p.add_argument("layer", choices=(*LAYERS, "all"))
    p.add_argument("--available-now", action="store_true", help="process what is there, then exit")
    p.add_argument(
        "--max-offsets",
        type=_positive_int,
        default=50_000,
        help="Kafka records per bronze micro-batch at most (default 50,000)",
    )
    p.add_argument(
        "--trigger-interval",
        default="5 seconds",
        help="micro-batch interval of long-running queries (default '5 seconds')",
    )
    p.add_argument(
        "--gold-max-rows",
        type=_positive_int,
        default=None,
        help="gold.events_enriched rows per micro-batch of the gold aggregations "
        "(default: everything new)",
    )
    p.set_defaults(handler=_cmd_stream)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value
