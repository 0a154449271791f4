"""Geo enrichment benchmark: per-row API calls in a UDF (the old way) vs the chain, cold and warm.

Runs on the real local components: the SparkSession of the project (its own state folder
``<state>/bench``, so the user's catalog is untouched), the ipinfo double on 127.0.0.1 with 200 ms
latency, the offline DB-IP database. Prints a table; never fails on a time.

    .venv/bin/python benchmarks/bench_geo.py [--events 10000] [--distinct 2000] [--full]

(a) The old system: a Python UDF doing ``GET /{ip}`` for each row, with a plain dict per Python
worker as its only cache. At 200 ms per request that takes minutes, so by default it runs on a
sample of the batch and extrapolates: requests for the full batch are counted exactly (distinct
addresses per partition, one dict per worker), time = measured seconds per request x those
requests / parallelism. ``--full`` runs it on the whole batch instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import statistics
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _prepare_environment() -> None:
    from webtraffic.settings import Settings

    base = Settings.from_env()
    os.environ.update(
        {
            "WEBTRAFFIC_STATE_DIR": str(base.state_dir / "bench"),
            "WEBTRAFFIC_JARS_DIR": str(base.jars_dir),
            "WEBTRAFFIC_GEO_DB_DIR": str(base.geo.offline_dir),
            "WEBTRAFFIC_SPARK_MASTER": os.environ.get("WEBTRAFFIC_SPARK_MASTER", "local[2]"),
            "WEBTRAFFIC_SPARK_SHUFFLE_PARTITIONS": "2",
        }
    )


def _public_ips(db: Any, count: int, seed: int) -> list[str]:
    import random

    from webtraffic.geo.bogons import classify, parse_ip

    rng = random.Random(seed)
    found: dict[str, None] = {}
    while len(found) < count:
        address = parse_ip(".".join(str(rng.randrange(256)) for _ in range(4)))
        if classify(address) is None and (db.record(address) or {}).get("country_code"):
            found[str(address)] = None
    return list(found)


def _old_udf(base_url: str, token: str) -> Any:
    """The replaced system's approach: an HTTP call per row in a UDF, a dict per worker."""
    from pyspark.sql import functions as sf

    def lookup_country(ip: str) -> str | None:
        import requests

        cache = globals().setdefault("_OLD_SYSTEM_CACHE", {})
        if ip not in cache:
            response = requests.get(
                f"{base_url}/{ip}", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            cache[ip] = response.json().get("country") if response.ok else None
        return cache[ip]

    return sf.udf(lookup_country, "string")


def _row(name: str, seconds: float, requests: int, note: str = "") -> tuple[str, str, str, str]:
    return (name, f"{seconds:8.2f}", f"{requests:,}", note)


def main() -> int:
    """Runs the benchmark and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--distinct", type=int, default=2_000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--sample", type=int, default=300, help="rows for (a) unless --full")
    parser.add_argument("--runs", type=int, default=3, help="runs of the cheap measurements")
    parser.add_argument("--full", action="store_true", help="run (a) on the whole batch")
    args = parser.parse_args()

    _prepare_environment()
    warnings.filterwarnings("ignore", "Cannot infer the eval type")
    from pyspark.sql import functions as sf

    from webtraffic.geo.cache_table import SparkGeoCacheStore
    from webtraffic.geo.chain import GeoChain
    from webtraffic.geo.enrich import enrich_with_geo
    from webtraffic.geo.ipinfo import IpinfoClient
    from webtraffic.geo.ipinfo_double import IpinfoDouble
    from webtraffic.geo.offline import OfflineGeoDB
    from webtraffic.settings import Secret, Settings
    from webtraffic.spark_session import build_spark_session

    settings = Settings.from_env()
    db = OfflineGeoDB(settings.geo.offline_dir)
    token = secrets.token_urlsafe(16)
    ips = _public_ips(db, args.distinct, seed=5)
    import random

    rng = random.Random(6)
    events = [(i, rng.choice(ips)) for i in range(args.events)]
    distinct_in_batch = len({ip for _, ip in events})

    print(
        f"geo enrichment benchmark: {args.events:,} events, {distinct_in_batch:,} distinct "
        f"public IPv4 addresses, ipinfo double latency {args.latency * 1000:.0f} ms"
    )
    spark = build_spark_session(settings, "webtraffic-bench-geo", {"spark.ui.enabled": "false"})
    parallelism = spark.sparkContext.defaultParallelism
    partitions = 2
    batch = (
        spark.createDataFrame(events, "event_no BIGINT, ip STRING")
        .repartition(partitions, "event_no")
        .cache()
    )
    batch.count()
    rows: list[tuple[str, str, str, str]] = []

    with IpinfoDouble(db, token=token, latency=args.latency) as double:
        # (a) per-row HTTP in a UDF with a dict per worker.
        udf = _old_udf(double.base_url, token)
        if args.full:
            sample, note = batch, "full batch"
        else:
            sample = spark.createDataFrame(events[: args.sample], batch.schema).repartition(
                partitions, "event_no"
            )
        double.reset()
        double.latency = args.latency
        started = time.monotonic()
        sample.withColumn("country", udf("ip")).agg(sf.count("country")).collect()
        seconds = time.monotonic() - started
        requests = double.request_count
        if not args.full:
            # Exact request count for the full batch: distinct addresses per partition.
            per_partition = (
                batch.withColumn("p", sf.spark_partition_id())
                .groupBy("p")
                .agg(sf.countDistinct("ip").alias("n"))
                .collect()
            )
            full_requests = sum(r.n for r in per_partition)
            per_request = seconds / max(requests, 1)
            seconds = per_request * full_requests
            note = (
                f"extrapolated: {requests} requests measured on {args.sample} rows, "
                f"{per_request * 1000:.0f} ms/request wall on {parallelism} cores"
            )
            requests = full_requests
        rows.append(_row("(a) per-row GET in a UDF, dict per worker", seconds, requests, note))

        # (b) cold and (c) warm chain.
        double.latency = args.latency
        geo = dataclasses.replace(
            settings.geo,
            provider="ipinfo",
            ipinfo_token=Secret(token),
            ipinfo_url=double.base_url,
        )
        cold_times, cold_requests = [], []
        table = ""
        for _ in range(args.runs):
            table = f"ref.geo_cache_bench_{uuid.uuid4().hex[:8]}"
            chain = GeoChain(
                geo,
                store=SparkGeoCacheStore(spark, table),
                offline=db,
                ipinfo=IpinfoClient.from_settings(geo),
            )
            double.reset()
            double.latency = args.latency
            started = time.monotonic()
            enrich_with_geo(batch, chain).agg(sf.count("country_code")).collect()
            cold_times.append(time.monotonic() - started)
            cold_requests.append(double.request_count)
        rows.append(
            _row(
                "(b) chain, cold (empty memory cache and table)",
                statistics.median(cold_times),
                int(statistics.median(cold_requests)),
                f"median of {args.runs}; includes appending {distinct_in_batch:,} table rows",
            )
        )
        table_times, memory_times, warm_requests = [], [], 0
        double.reset()
        double.latency = args.latency
        for _ in range(args.runs):
            fresh = GeoChain(
                geo,
                store=SparkGeoCacheStore(spark, table),
                offline=db,
                ipinfo=IpinfoClient.from_settings(geo),
            )
            started = time.monotonic()
            enrich_with_geo(batch, fresh).agg(sf.count("country_code")).collect()
            table_times.append(time.monotonic() - started)
            started = time.monotonic()
            enrich_with_geo(batch, fresh).agg(sf.count("country_code")).collect()
            memory_times.append(time.monotonic() - started)
        warm_requests = double.request_count
        rows.append(
            _row(
                "(c) chain, warm table (new application)",
                statistics.median(table_times),
                warm_requests,
                f"median of {args.runs}",
            )
        )
        rows.append(
            _row(
                "(c) chain, warm memory cache",
                statistics.median(memory_times),
                0,
                f"median of {args.runs}",
            )
        )

    # Offline lookups per second.
    from datetime import UTC, datetime

    from webtraffic.geo.bogons import parse_ip

    addresses = [parse_ip(ip) for ip in ips] * max(1, 200_000 // len(ips))
    raw_rates, full_rates = [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        for address in addresses:
            db.record(address)
        raw_rates.append(len(addresses) / (time.perf_counter() - started))
        now = datetime.now(UTC)
        started = time.perf_counter()
        for address in addresses:
            db.lookup(address, now, 3600.0)
        full_rates.append(len(addresses) / (time.perf_counter() - started))

    header = ("approach", "wall s", "requests", "note")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print()
    for i, row in enumerate([header, *rows]):
        print(
            "  ".join(
                cell.ljust(widths[j]) if j in (0, 3) else cell.rjust(widths[j])
                for j, cell in enumerate(row)
            ).rstrip()
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(
        f"offline DB-IP lookups ({len(addresses):,} per run, median of {args.runs}): "
        f"{statistics.median(raw_rates):,.0f}/s raw maxminddb record, "
        f"{statistics.median(full_rates):,.0f}/s as GeoResult (data {db.build_date})"
    )
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
