"""Reads and writes of the Iceberg table ``ref.geo_cache`` (one row per answer, latest wins).

Two interchangeable stores: :class:`SparkGeoCacheStore` for the streaming apps and Airflow jobs
(works on every profile) and :class:`PyIcebergGeoCacheStore` for light local tools such as
``webtraffic geo lookup`` (no JVM). Both write the same schema to the same table.

Writes are appends; a refresh appends a newer row, and readers take the row with the latest
``fetched_at`` per address. :meth:`SparkGeoCacheStore.compact` rewrites the table keeping only
the latest row per address.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from webtraffic.geo.model import CACHE_COLUMNS, GeoResult

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyspark.sql import DataFrame, SparkSession

SPARK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ip", "STRING"),
    ("country_code", "STRING"),
    ("country_name", "STRING"),
    ("region", "STRING"),
    ("city", "STRING"),
    ("latitude", "DOUBLE"),
    ("longitude", "DOUBLE"),
    ("geo_source", "STRING"),
    ("geo_status", "STRING"),
    ("geo_data_version", "STRING"),
    ("detail", "STRING"),
    ("attempts", "INT"),
    ("fetched_at", "TIMESTAMP"),
    ("expires_at", "TIMESTAMP"),
)
_TIMESTAMPS = ("fetched_at", "expires_at")
assert tuple(name for name, _ in SPARK_COLUMNS) == CACHE_COLUMNS


def _micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)


def _from_micros(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1_000_000, tz=UTC)


def _latest(rows: list[dict[str, Any]]) -> dict[str, GeoResult]:
    latest: dict[str, GeoResult] = {}
    for row in rows:
        result = GeoResult.from_cache_row(row)
        current = latest.get(result.ip)
        if current is None or (result.fetched_at or datetime.min.replace(tzinfo=UTC)) >= (
            current.fetched_at or datetime.min.replace(tzinfo=UTC)
        ):
            latest[result.ip] = result
    return latest


class GeoCacheStore(Protocol):
    """What the chain needs from the cache table."""

    table: str

    def get_many(self, ips: Sequence[str]) -> dict[str, GeoResult]:
        """Returns the latest entry of each address found (fresh or expired)."""
        ...

    def put_many(self, results: Sequence[GeoResult]) -> None:
        """Appends entries."""
        ...

    def due_for_refresh(self, now: datetime, limit: int) -> list[str]:
        """Returns addresses whose latest entry expired (or whose retry time came) by ``now``."""
        ...


class SparkGeoCacheStore:
    """``ref.geo_cache`` through Spark (the project's Iceberg catalog is Spark's default)."""

    def __init__(self, spark: SparkSession, table: str = "ref.geo_cache") -> None:
        """Creates the namespace and the table if needed.

        Args:
            spark: The session (its default catalog holds the table).
            table: ``namespace.table``.
        """
        self.spark = spark
        self.table = table
        self.ensure_table()

    def ensure_table(self) -> None:
        """Creates the namespace and table when they do not exist."""
        namespace = self.table.rsplit(".", 1)[0]
        self.spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {namespace}")
        columns = ", ".join(f"{name} {kind}" for name, kind in SPARK_COLUMNS)
        self.spark.sql(
            f"CREATE TABLE IF NOT EXISTS {self.table} ({columns}) USING iceberg "
            "TBLPROPERTIES ('format-version'='2', 'write.distribution-mode'='none')"
        )

    def _latest_frame(self, frame: DataFrame) -> DataFrame:
        from pyspark.sql import Window
        from pyspark.sql import functions as sf

        window = Window.partitionBy("ip").orderBy(sf.col("fetched_at").desc_nulls_last())
        return (
            frame.withColumn("_rank", sf.row_number().over(window)).where("_rank = 1").drop("_rank")
        )

    def _collect(self, frame: DataFrame) -> list[dict[str, Any]]:
        from pyspark.sql import functions as sf

        # Timestamps travel as epoch micros: no dependence on the Python process's time zone.
        selected = frame.select(
            *(
                sf.unix_micros(sf.col(name)).alias(name) if name in _TIMESTAMPS else sf.col(name)
                for name in CACHE_COLUMNS
            )
        )
        rows = []
        for row in selected.collect():
            data = row.asDict()
            for name in _TIMESTAMPS:
                data[name] = _from_micros(data[name])
            rows.append(data)
        return rows

    def get_many(self, ips: Sequence[str]) -> dict[str, GeoResult]:
        """Returns the latest entry of each address found (fresh or expired)."""
        if not ips:
            return {}
        from pyspark.sql import functions as sf

        keys = self.spark.createDataFrame([(ip,) for ip in dict.fromkeys(ips)], "ip STRING")
        found = self.spark.table(self.table).join(sf.broadcast(keys), "ip")
        return _latest(self._collect(self._latest_frame(found)))

    def to_frame(self, results: Sequence[GeoResult]) -> DataFrame:
        """Returns entries as a DataFrame with the table's schema."""
        from pyspark.sql import functions as sf

        schema = ", ".join(
            f"{name} {'BIGINT' if name in _TIMESTAMPS else kind}" for name, kind in SPARK_COLUMNS
        )
        rows = [
            tuple(
                _micros(v) if n in _TIMESTAMPS else v
                for n, v in zip(CACHE_COLUMNS, r.cache_row(), strict=True)
            )
            for r in results
        ]
        frame = self.spark.createDataFrame(rows, schema)
        return frame.select(
            *(
                sf.timestamp_micros(sf.col(name)).alias(name)
                if name in _TIMESTAMPS
                else sf.col(name)
                for name in CACHE_COLUMNS
            )
        )

    def put_many(self, results: Sequence[GeoResult]) -> None:
        """Appends entries in one commit."""
        if results:
            self.to_frame(results).writeTo(self.table).append()

    def due_for_refresh(self, now: datetime, limit: int) -> list[str]:
        """Returns addresses whose latest entry expired by ``now`` (oldest expiry first)."""
        from pyspark.sql import functions as sf

        latest = self._latest_frame(self.spark.table(self.table))
        due = (
            latest.where(sf.col("expires_at") <= sf.timestamp_micros(sf.lit(_micros(now))))
            .orderBy("expires_at")
            .limit(limit)
            .select("ip")
        )
        return [row.ip for row in due.collect()]

    def compact(self) -> int:
        """Rewrites the table keeping only the latest row per address.

        Returns:
            The number of rows kept.
        """
        latest = self._latest_frame(self.spark.table(self.table)).localCheckpoint()
        latest.writeTo(self.table).overwritePartitions()
        return latest.count()


def arrow_schema() -> pa.Schema:
    """The table schema as an Arrow schema (all columns nullable, timestamps in UTC)."""
    import pyarrow as pa

    kinds = {
        "STRING": pa.string(),
        "DOUBLE": pa.float64(),
        "INT": pa.int32(),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    }
    return pa.schema([pa.field(name, kinds[kind], nullable=True) for name, kind in SPARK_COLUMNS])


class PyIcebergGeoCacheStore:
    """``ref.geo_cache`` through pyiceberg (local profile; no JVM needed)."""

    def __init__(self, catalog: Catalog, table: str = "ref.geo_cache") -> None:
        """Creates the namespace and the table if needed.

        Args:
            catalog: The project's catalog (``webtraffic.catalog.load_catalog``).
            table: ``namespace.table``.
        """
        self.catalog = catalog
        self.table = table
        namespace = table.rsplit(".", 1)[0]
        catalog.create_namespace_if_not_exists(namespace)
        catalog.create_table_if_not_exists(table, schema=arrow_schema())

    def _read(self, row_filter: Any = None) -> list[dict[str, Any]]:
        table = self.catalog.load_table(self.table)  # fresh metadata: other writers commit too
        scan = table.scan(row_filter=row_filter) if row_filter is not None else table.scan()
        return scan.to_arrow().select(list(CACHE_COLUMNS)).to_pylist()

    def get_many(self, ips: Sequence[str]) -> dict[str, GeoResult]:
        """Returns the latest entry of each address found (fresh or expired)."""
        if not ips:
            return {}
        from pyiceberg.expressions import In

        return _latest(self._read(In("ip", set(ips))))

    def put_many(self, results: Sequence[GeoResult]) -> None:
        """Appends entries in one commit."""
        if not results:
            return
        import pyarrow as pa

        rows = [dict(zip(CACHE_COLUMNS, r.cache_row(), strict=True)) for r in results]
        self.catalog.load_table(self.table).append(pa.Table.from_pylist(rows, arrow_schema()))

    def due_for_refresh(self, now: datetime, limit: int) -> list[str]:
        """Returns addresses whose latest entry expired by ``now`` (oldest expiry first)."""
        latest = _latest(self._read())
        due = [r for r in latest.values() if r.expires_at is not None and r.expires_at <= now]
        due.sort(key=lambda r: r.expires_at or now)
        return [r.ip for r in due[:limit]]
