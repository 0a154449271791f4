"""``webtraffic geo lookup IP [IP ...] [--json]``: what the chain answers, and from where."""

from __future__ import annotations

import argparse
import json
from typing import Any

from webtraffic.errors import WebtrafficError
from webtraffic.settings import Settings


def register(subparsers: Any) -> None:
    """Adds the ``geo`` command to the ``webtraffic`` parser."""
    p_geo = subparsers.add_parser("geo", help="IP geolocation: look addresses up by hand")
    actions = p_geo.add_subparsers(dest="geo_action", required=True, metavar="ACTION")
    p_lookup = actions.add_parser(
        "lookup",
        help="what the geo chain answers for each address, and from where",
        description=(
            "Answers each address through the chain the pipeline uses: in-process cache, the "
            "cache table, then the resolver (offline DB-IP database or ipinfo.io). New answers "
            "are stored in the cache table, as the pipeline would."
        ),
    )
    p_lookup.add_argument("ips", nargs="+", metavar="IP", help="IPv4 or IPv6 address")
    p_lookup.add_argument("--json", action="store_true", help="machine-readable output")
    p_lookup.add_argument(
        "--no-table", action="store_true", help="skip the cache table (resolver only)"
    )
    p_lookup.set_defaults(handler=_cmd_lookup)


def _origin_text(result: Any, chain: Any) -> str:
    origin = result.origin
    if origin == "classifier":
        return "local classifier (never sent to a resolver)"
    if origin == "memory":
        return "in-process cache"
    if origin == "table":
        fetched = result.fetched_at.strftime("%Y-%m-%d %H:%M UTC") if result.fetched_at else "?"
        return f"cache table {chain.store.table} ({result.geo_source}, fetched {fetched})"
    if origin == "offline":
        db = chain.offline
        date = db.build_date if db is not None else "?"
        return f"offline database DB-IP City Lite (data of {date})"
    if origin == "ipinfo":
        return f"ipinfo.io API ({chain.ipinfo.base_url})" if chain.ipinfo else "ipinfo.io API"
    return str(origin)


def _place(result: Any) -> str:
    if result.geo_status == "non-routable":
        return f"non-routable ({result.detail})"
    if result.geo_status in ("pending", "invalid") and not result.country_code:
        return f"{result.geo_status} ({result.detail})"
    parts = [f"{result.country_name or '?'} ({result.country_code})"]
    parts += [part for part in (result.region, result.city) if part]
    where = ", ".join(parts)
    if result.latitude is not None and result.longitude is not None:
        where += f"  [{result.latitude:.4f}, {result.longitude:.4f}]"
    return where


def _cmd_lookup(args: argparse.Namespace, settings: Settings) -> int:
    from webtraffic.geo.bogons import parse_ip
    from webtraffic.geo.chain import GeoChain

    for text in args.ips:
        parse_ip(text)  # raises InvalidIPError (a WebtrafficError): one line, exit 1
    store = None
    if not args.no_table:
        if settings.profile != "local":
            raise WebtrafficError(
                "geo lookup reads the cache table with pyiceberg in the local profile only; "
                "use --no-table"
            )
        from webtraffic.catalog import load_catalog
        from webtraffic.geo.cache_table import PyIcebergGeoCacheStore

        store = PyIcebergGeoCacheStore(load_catalog(settings), settings.geo.cache_table)
    chain = GeoChain.from_settings(settings.geo, store)
    try:
        answers = chain.lookup_many(args.ips)
        if args.json:
            out = []
            for text in args.ips:
                data = answers[text].to_dict()
                data["input"] = text
                data["origin_description"] = _origin_text(answers[text], chain)
                out.append(data)
            print(json.dumps(out, indent=2, sort_keys=True))
            return 0
        width = max(len(text) for text in args.ips)
        for text in args.ips:
            result = answers[text]
            print(f"{text:<{width}}  {result.geo_status:<12}  {_place(result)}")
            print(f"{'':<{width}}  {'from':<12}  {_origin_text(result, chain)}")
    finally:
        chain.close()
    return 0
