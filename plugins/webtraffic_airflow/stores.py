"""Small key-value stores for what the supervisor must remember between runs.

The supervisor keeps each app's restart times (for the per-hour bound) and the Databricks
launcher each app's current run id. In Airflow they live in Variables (visible under Admin →
Variables, shared by every worker); :class:`JsonFileStore` keeps them in a file for command-line
use and tests.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Protocol


class KeyValueStore(Protocol):
    """String values by key."""

    def get(self, key: str) -> str | None:
        """Returns the value of ``key``, None when unset."""

    def set(self, key: str, value: str) -> None:
        """Sets ``key``."""


class AirflowVariableStore:
    """Airflow Variables named ``<prefix><key>`` (looked up at run time only).

    Args:
        prefix: Name prefix of the Variables.
    """

    def __init__(self, prefix: str = "webtraffic_") -> None:
        self.prefix = prefix

    def get(self, key: str) -> str | None:  # noqa: D102
        from airflow.sdk import Variable

        value = Variable.get(self.prefix + key, default=None)
        return None if value is None else str(value)

    def set(self, key: str, value: str) -> None:  # noqa: D102
        from airflow.sdk import Variable

        Variable.set(self.prefix + key, value)


class JsonFileStore:
    """One JSON object in a file, updated under an exclusive lock.

    Args:
        path: The file (created on first write).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> str | None:  # noqa: D102
        return self._read().get(key)

    def set(self, key: str, value: str) -> None:  # noqa: D102
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_suffix(".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            data[key] = value
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            tmp.replace(self.path)
