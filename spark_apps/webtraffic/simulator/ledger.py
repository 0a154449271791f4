"""The ledger: one row per produced record, the ground truth every correctness test uses.

Written as Parquet (``.parquet``) or JSON lines (any other suffix). Times are epoch milliseconds
(UTC) so the file reads the same in any tool.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

LEDGER_COLUMNS: dict[str, str] = {
    "seq": "send order, 0-based (several workers: by worker, then the worker's send order)",
    "event_id": "id the pipeline derives: event_id field, else SHA-256 of the raw value",
    "valid": "whether silver must accept the record",
    "reason": "reason code the pipeline must assign (null when valid)",
    "duplicate_of": "seq of the record this one exactly repeats (a retrying producer), else null",
    "late_by_ms": "how far event_time lags behind the send time (0 = on time)",
    "out_of_order": "held back and sent after later records",
    "partition": "Kafka partition (null for a file sink)",
    "offset": "Kafka offset (null for a file sink)",
    "kafka_ts_ms": "Kafka record timestamp, epoch ms (null for a file sink)",
    "send_ms": "nominal send time, epoch ms (= event time of an on-time record)",
    "event_time_ms": "event time in UTC, epoch ms (null when the record has none)",
    "visitor_key": "u:<user_id> | a:<anonymous_id> | h:<sha256(ip|ua)>",
    "key": "Kafka key",
    "host": "site host",
    "path": "URL path",
    "event_type": "page_view, click or scroll",
    "is_bot": "crawler or bot",
    "device_class": "desktop, mobile, tablet or bot",
    "ip": "visitor IP as sent",
    "size": "bytes of the value",
    "worker": "simulator process that sent the record (0 unless --workers > 1)",
}


_REPEATING = ["reason", "visitor_key", "key", "host", "path", "event_type", "device_class", "ip"]


def write_ledger(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """Writes ledger rows to ``path`` (Parquet if it ends in .parquet, else JSON lines).

    Returns:
        The number of rows written.
    """
    rows = list(rows)
    return write_ledger_columns(
        {name: [row.get(name) for row in rows] for name in LEDGER_COLUMNS}, path
    )


def write_ledger_columns(columns: Mapping[str, Sequence[Any]], path: Path) -> int:
    """Writes a ledger given as columns (one list per ledger column, in send order).

    Returns:
        The number of rows written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(columns["seq"])  # type: ignore[arg-type]
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                name: columns[name]
                if isinstance(columns[name], (pa.Array, pa.ChunkedArray))
                else pa.array(columns[name])
                for name in LEDGER_COLUMNS
            }
        )
        # Dictionary encoding only where values repeat (event ids never do).
        pq.write_table(table, path, use_dictionary=_REPEATING)
    else:
        with path.open("w", encoding="utf-8") as out:
            for row in rows_from_columns(columns):
                out.write(json.dumps(row) + "\n")
    return n


def rows_from_columns(columns: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Ledger rows as dicts (``LEDGER_COLUMNS`` order) from the ledger's columns."""
    names = list(LEDGER_COLUMNS)
    lists = [_as_list(columns[n]) for n in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]


def _as_list(values: Any) -> list[Any]:
    """A column as a list of Python values (Arrow arrays and numpy arrays included)."""
    if hasattr(values, "to_pylist"):
        return values.to_pylist()
    if hasattr(values, "tolist"):
        return values.tolist()
    return list(values)


def read_ledger(path: Path | str) -> list[dict[str, Any]]:
    """Reads a ledger written by :func:`write_ledger`, rows in send order."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        with path.open(encoding="utf-8") as src:
            rows = [json.loads(line) for line in src if line.strip()]
    return sorted(rows, key=lambda r: r["seq"])
