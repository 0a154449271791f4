"""The local stack as one unit: ``webtraffic stack up | down | status``.

Today it is the Kafka broker and the Iceberg catalog files; later issues add the streaming apps
and Airflow here, so that ``make run`` and ``make clean`` stay one command each.
"""

from __future__ import annotations

from typing import Any

from webtraffic.catalog import prepare_local_catalog
from webtraffic.errors import WebtrafficError
from webtraffic.kafka_broker import LocalKafkaBroker
from webtraffic.settings import Settings


def _require_local(settings: Settings) -> None:
    if settings.profile != "local":
        raise WebtrafficError(
            "`webtraffic stack` manages the embedded local stack; the databricks profile uses "
            "managed services"
        )


def stack_up(settings: Settings) -> dict[str, Any]:
    """Starts every local component that is not running yet; harmless when already up.

    Returns:
        The stack status after start (see :func:`stack_status`).
    """
    _require_local(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    prepare_local_catalog(settings)
    LocalKafkaBroker(settings).start()
    return stack_status(settings)


def stack_down(settings: Settings) -> list[str]:
    """Stops every local component this project started.

    Returns:
        The names of the components that were running and are now stopped.
    """
    _require_local(settings)
    stopped = []
    if LocalKafkaBroker(settings).stop():
        stopped.append("kafka")
    return stopped


def stack_status(settings: Settings) -> dict[str, Any]:
    """Tells what runs, on which ports, with which pids, and where the state lives."""
    _require_local(settings)
    return {
        "state_dir": str(settings.state_dir),
        "kafka": LocalKafkaBroker(settings).status().to_dict(),
        "catalog": {
            "name": settings.catalog_name,
            "uri": f"sqlite:///{settings.catalog_db}",
            "warehouse": settings.warehouse_dir.as_uri(),
            "exists": settings.catalog_db.exists(),
        },
    }
