"""The Iceberg catalog, seen from Python through pyiceberg (no Spark needed).

Locally it is an Iceberg JDBC catalog on a SQLite file: Spark reaches it through Iceberg's
``JdbcCatalog`` (see ``spark_session.py``) and pyiceberg through ``SqlCatalog`` under the same
catalog name, so both read and write the same ``iceberg_tables`` rows (compare-and-swap on
``metadata_location``).
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from webtraffic.errors import WebtrafficError
from webtraffic.settings import Settings

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog


def prepare_local_catalog(settings: Settings) -> None:
    """Creates the catalog file and warehouse folder and switches SQLite to WAL mode.

    WAL lets the streaming apps, Airflow tasks and the CLI read while one of them commits;
    the mode is stored in the file, so every later connection gets it.
    """
    settings.catalog_db.parent.mkdir(parents=True, exist_ok=True)
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(settings.catalog_db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def load_catalog(settings: Settings) -> Catalog:
    """Opens the project's Iceberg catalog with pyiceberg.

    Raises:
        WebtrafficError: The profile has no catalog pyiceberg can open from here.
    """
    if settings.profile != "local":
        raise WebtrafficError(
            "pyiceberg reaches the catalog only in the local profile; on Databricks use "
            "Unity Catalog through Spark"
        )
    from pyiceberg.catalog.sql import SqlCatalog

    prepare_local_catalog(settings)
    return SqlCatalog(
        settings.catalog_name,
        uri=f"sqlite:///{settings.catalog_db}",
        warehouse=settings.warehouse_dir.as_uri(),
        # Same catalog table layout as Spark's JdbcCatalog with jdbc.schema-version=V1.
        schema_version="v1",
    )


@dataclass
class TableSummary:
    """One line of ``webtraffic tables``."""

    table: str
    rows: int
    snapshots: int
    data_files: int
    last_commit: str | None  # ISO 8601 UTC, None for a table never written

    def to_dict(self) -> dict[str, object]:
        """Returns a JSON-ready dict."""
        return asdict(self)


def _all_namespaces(catalog: Catalog) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    pending = list(catalog.list_namespaces())
    while pending:
        namespace = tuple(pending.pop(0))
        found.append(namespace)
        pending.extend(tuple(child) for child in catalog.list_namespaces(namespace))
    return sorted(found)


def table_summaries(catalog: Catalog) -> list[TableSummary]:
    """Summarises every table of the catalog from its metadata alone (no data file is read).

    Row and file counts come from the current snapshot's summary, which every Iceberg writer
    (Spark and pyiceberg alike) keeps up to date.
    """
    summaries: list[TableSummary] = []
    for namespace in _all_namespaces(catalog):
        for identifier in sorted(catalog.list_tables(namespace)):
            table = catalog.load_table(identifier)
            snapshot = table.current_snapshot()
            totals = snapshot.summary if snapshot is not None and snapshot.summary else {}
            summaries.append(
                TableSummary(
                    table=".".join(identifier),
                    rows=int(totals.get("total-records", 0)),
                    snapshots=len(table.snapshots()),
                    data_files=int(totals.get("total-data-files", 0)),
                    last_commit=(
                        datetime.fromtimestamp(snapshot.timestamp_ms / 1000, tz=UTC).isoformat()
                        if snapshot is not None
                        else None
                    ),
                )
            )
    return summaries
