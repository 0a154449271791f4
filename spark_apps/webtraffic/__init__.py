"""webtraffic: real-time website-users analytics (Kafka, Spark Structured Streaming, Iceberg)."""

from __future__ import annotations

__version__ = "0.1.0"
