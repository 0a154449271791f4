"""IP geolocation: bogon classification, offline DB-IP database, ipinfo.io client, caches.

The provider chain, cheapest first: an in-process TTL cache, the Iceberg table ``ref.geo_cache``,
then one resolver call for the misses (the offline database, or ipinfo.io with the offline
database as its fallback). Non-routable addresses are answered locally and never sent anywhere.
Spark code calls :func:`webtraffic.geo.enrich.enrich_with_geo` once per (micro-)batch: no HTTP
call ever happens inside a Spark task.
"""

from __future__ import annotations

from webtraffic.geo.model import GEO_COLUMNS, GeoResult, GeoStatus

__all__ = ["GEO_COLUMNS", "GeoResult", "GeoStatus"]
