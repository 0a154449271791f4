"""Geo enrichment of a Spark batch: distinct IPs to the driver, one chain call, a broadcast join.

Call :func:`enrich_with_geo` on a batch DataFrame or on each micro-batch inside ``foreachBatch``.
Per batch it runs one small Spark job to collect the distinct addresses, looks them up through the
chain (memory cache, then ``ref.geo_cache`` for the misses, then one resolver call for what is
left, whose answers are appended to the table), and joins the answers back. No Python UDF, no
HTTP call inside a Spark task. The input is evaluated twice (distinct, then join): cache or
persist it first if it is expensive to compute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from webtraffic.errors import WebtrafficError
from webtraffic.geo.cache_table import SparkGeoCacheStore
from webtraffic.geo.chain import GeoChain
from webtraffic.geo.model import GEO_COLUMNS
from webtraffic.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_JOIN_KEY = "__geo_ip_key"
GEO_SPARK_SCHEMA = (
    f"{_JOIN_KEY} STRING, country_code STRING, country_name STRING, region STRING, city STRING, "
    "latitude DOUBLE, longitude DOUBLE, geo_source STRING, geo_status STRING, "
    "geo_data_version STRING"
)


def spark_geo_chain(settings: Settings, spark: SparkSession) -> GeoChain:
    """Returns the chain of a Spark application: its caches, the table through Spark.

    With the offline provider the chain skips ``ref.geo_cache``: the local database answers
    about 100,000 lookups a second, far faster than a per-micro-batch join with a table that
    grows with every new address. The table caches what costs money or time: ipinfo answers.
    """
    if settings.geo.effective_provider == "offline":
        return GeoChain.from_settings(settings.geo)
    store = SparkGeoCacheStore(spark, settings.geo.cache_table)
    return GeoChain.from_settings(settings.geo, store)


def enrich_with_geo(df: DataFrame, chain: GeoChain, ip_column: str = "ip") -> DataFrame:
    """Adds the geo columns to every row of a (micro-)batch.

    Args:
        df: A batch (not a streaming) DataFrame with a string column ``ip_column``.
        chain: The application's chain (keep one per application: it holds the memory cache).
        ip_column: The column with the visitor address.

    Returns:
        ``df`` with ``country_code, country_name, region, city, latitude, longitude, geo_source,
        geo_status, geo_data_version`` appended. Rows without an address get ``geo_status``
        ``invalid``.

    Raises:
        WebtrafficError: ``df`` is a streaming DataFrame (use ``foreachBatch``) or lacks the
            column.
    """
    from pyspark.sql import functions as sf

    if df.isStreaming:
        raise WebtrafficError(
            "enrich_with_geo needs a batch DataFrame: call it inside foreachBatch of the stream"
        )
    if ip_column not in df.columns:
        raise WebtrafficError(f"enrich_with_geo: the DataFrame has no column {ip_column!r}")
    clashing = [name for name in GEO_COLUMNS if name in df.columns]
    if clashing:
        raise WebtrafficError(f"enrich_with_geo: the DataFrame already has {', '.join(clashing)}")

    ip = sf.col(ip_column).cast("string")
    distinct = [row[0] for row in df.select(ip).where(ip.isNotNull()).distinct().collect()]
    answers = chain.lookup_many(distinct)
    rows = [(text, *result.geo_row()[1:]) for text, result in answers.items()]
    geo = df.sparkSession.createDataFrame(rows, GEO_SPARK_SCHEMA)
    joined = df.join(sf.broadcast(geo), ip == sf.col(_JOIN_KEY), "left").drop(_JOIN_KEY)
    return joined.withColumn("geo_status", sf.coalesce(sf.col("geo_status"), sf.lit("invalid")))
