"""Silver: parse, validate, normalise and deduplicate (``silver.events`` and its quarantine).

Pure ``DataFrame -> DataFrame`` functions over bronze rows, indifferent to streaming or batch.
The rules are the event contract's (``webtraffic.contract``), implemented here with Spark SQL
functions (VARIANT for JSON types, regular expressions for event times and IPs); the simulator's
reference classifier implements the same contract separately, which is what the tests compare.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import functions as F
from pyspark.sql.types import (
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
)

from webtraffic.contract import (
    DEFAULT_EVENT_TYPE,
    EVENT_TIME_PATTERN,
    MAX_FUTURE_SKEW,
    MAX_PAYLOAD_BYTES,
    REASON_CODES,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

DEDUP_WATERMARK = "15 minutes"
"""Ingestion-time horizon of deduplication: a copy of an event that bronze ingests within 15
minutes of the first copy is dropped (a retrying producer resends within seconds). Measured on
``ingest_ts``, not on the event time: silver then never drops a late event, and a client whose
clock runs ahead cannot move the horizon."""

_VERSION = StructType([StructField(p, StringType()) for p in ("family", "major", "minor", "patch")])
EVENT_SCHEMA = StructType(
    [
        StructField("url", StringType()),
        StructField("referrer", StringType()),
        StructField("user_id", LongType()),
        StructField("academy_id", LongType()),
        StructField(
            "user_agent",
            StructType(
                [
                    *_VERSION.fields,
                    StructField("device", _VERSION),
                    StructField("os", _VERSION),
                ]
            ),
        ),
        StructField("headers", MapType(StringType(), StringType())),
        StructField("host", StringType()),
        StructField("ip", StringType()),
        StructField("event_time", StringType()),
        StructField("event_id", StringType()),
        StructField("event_type", StringType()),
        StructField("anonymous_id", StringType()),
    ]
)
"""The explicit schema of the wire format (shared/DESIGN.md §3). Extra fields are ignored."""

_IPV4 = (
    r"((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
)
_H = "[0-9a-fA-F]{1,4}"
IPV4_PATTERN = f"^{_IPV4}$"
IPV6_PATTERN = (
    "^("
    f"({_H}:){{7}}{_H}"
    f"|({_H}:){{1,7}}:"
    f"|({_H}:){{1,6}}:{_H}"
    f"|({_H}:){{1,5}}(:{_H}){{1,2}}"
    f"|({_H}:){{1,4}}(:{_H}){{1,3}}"
    f"|({_H}:){{1,3}}(:{_H}){{1,4}}"
    f"|({_H}:){{1,2}}(:{_H}){{1,5}}"
    f"|{_H}:(:{_H}){{1,6}}"
    f"|:((:{_H}){{1,7}}|:)"
    f"|({_H}:){{6}}{_IPV4}"
    f"|({_H}:){{1,5}}:{_IPV4}"
    f"|({_H}:){{1,4}}(:{_H}){{1,1}}:{_IPV4}"
    f"|({_H}:){{1,3}}(:{_H}){{1,2}}:{_IPV4}"
    f"|({_H}:){{1,2}}(:{_H}){{1,3}}:{_IPV4}"
    f"|{_H}:(:{_H}){{1,4}}:{_IPV4}"
    f"|::((({_H}:){{0,5}}){_IPV4})"
    ")$"
)

_STRING_FIELDS = ("url", "referrer", "host", "ip", "event_time", "event_id", "event_type",
                  "anonymous_id")  # fmt: skip
_INTEGER_FIELDS = ("user_id", "academy_id")
_OBJECT_FIELDS = ("user_agent", "headers")
_INTEGER_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT", "VOID")
_UA_PARTS = ("family", "major", "minor", "patch")
_UA_OBJECTS = ("device", "os")


def _type(path: str) -> str:
    """SQL: the VARIANT type name at ``path`` of the parsed value (NULL when absent)."""
    return f"schema_of_variant(variant_get(_json, '{path}'))"


def _one_of(names: tuple[str, ...] | list[str]) -> str:
    return "(?:" + "|".join(names) + ")"


_END = "(?:, (?!>)|(?=>))"  # after a field: the next one, or the end of the object


def _object(*fields: str) -> str:
    """Regex: an ``OBJECT<name: TYPE, ...>`` type whose every field matches one of ``fields``."""
    return f"OBJECT<(?:{_one_of(fields)}{_END})*+>"


# Field names as schema_of_variant prints them: [A-Za-z0-9_]+ as they are, others in backquotes
# (an inner backquote doubled). Quoted names holding a backquote, ':', ',', '<' or '>' are left
# out, so that a match always cuts the type string at its real field and type boundaries (and
# the header rule's ': ' can only be a separator).
_NAME = "(?:[A-Za-z0-9_]++|`[^`:,<>]*+`)"
_SCALAR = "[A-Z_]++(?:[(][0-9]++,[0-9]++[)])?+"  # STRING, BIGINT, VOID, DECIMAL(3,1), ...


def _any(depth: int) -> str:
    """Regex: any type nested at most ``depth`` objects or arrays deep."""
    if depth == 0:
        return _SCALAR
    inner = _any(depth - 1)
    return f"(?:{_SCALAR}|ARRAY<{inner}>|{_object(f'{_NAME}: {inner}')})"


def _fields(types: dict[str, str], in_name_order: bool) -> str:
    """Regex: an OBJECT type with the fields ``types`` (name: type regex), each optional.

    In name order (as schema_of_variant prints them) and nothing else: the usual record, quick
    to match. Else in any order, with other fields the contract ignores (up to 3 levels deep).
    """
    if in_name_order:
        return "OBJECT<" + "".join(f"(?:{n}: {types[n]}{_END})?+" for n in sorted(types)) + ">"
    names: dict[str, list[str]] = {}
    for name, type_ in types.items():
        names.setdefault(type_, []).append(name)
    other = f"(?!{_one_of(list(types))}: ){_NAME}: {_any(3)}"
    return _object(*(f"{_one_of(n)}: {t}" for t, n in names.items()), other)


def _record(in_name_order: bool) -> str:
    """Regex: the type of a record in which no field of the contract has a wrong type."""
    string = "(?:STRING|VOID)"
    part = dict.fromkeys(_UA_PARTS, string)
    ua_object = _fields(part, in_name_order)
    ua = _fields({**part, **dict.fromkeys(_UA_OBJECTS, f"(?:VOID|{ua_object})")}, in_name_order)
    headers = _object(f"{_NAME}: STRING")
    types = {
        **dict.fromkeys(_STRING_FIELDS, string),
        **dict.fromkeys(_INTEGER_FIELDS, _one_of(_INTEGER_TYPES)),
        "user_agent": f"(?:VOID|{ua})",
        "headers": f"(?:VOID|{headers})",
    }
    return _fields(types, in_name_order)


_CONFORMING = f"^(?:{_record(in_name_order=True)}|{_record(in_name_order=False)})$"
"""Java regex over ``schema_of_variant`` of a whole record: it matches only records in which no
field of the contract has a wrong type (some such records it does not match; they take the
field-by-field rules). Needs no backslash, so it goes into SQL as it is."""


def _any_type(paths: list[str], condition: str) -> str:
    """SQL: whether the type name ``t`` at one of ``paths`` meets ``condition`` (absent: no)."""
    types = ", ".join(_type(p) for p in paths)
    return f"exists(array({types}), t -> coalesce({condition}, false))"


def _wrong_type_sql() -> str:
    """SQL: whether a field of the contract has a wrong JSON type (JSON null fits every type).

    The rules take a ``schema_of_variant`` per field, some 30 per record. One of the whole
    record (the ``_schema`` column of :func:`validate`) usually settles it: when it matches
    ``_CONFORMING``, no rule can fail. The rules run on the other records only (not objects,
    wrong types, deeply nested extra fields...).
    """
    ua = "$.user_agent"
    objects = [f"{ua}.{o}" for o in _UA_OBJECTS]
    integer_types = ", ".join(f"'{t}'" for t in _INTEGER_TYPES)
    rules = [
        _any_type(
            [f"$.{f}" for f in _STRING_FIELDS]
            + [f"{o}.{p}" for o in (ua, *objects) for p in _UA_PARTS],
            "t NOT IN ('STRING', 'VOID')",
        ),
        _any_type([f"$.{f}" for f in _INTEGER_FIELDS], f"t NOT IN ({integer_types})"),
        _any_type(
            [f"$.{f}" for f in _OBJECT_FIELDS] + objects, "NOT (t LIKE 'OBJECT%' OR t = 'VOID')"
        ),
        # Header values must all be strings: the OBJECT<...> type lists one type per key.
        _any_type(["$.headers"], "t LIKE 'OBJECT<%' AND t RLIKE ': (?!STRING[,>])'"),
    ]
    conforming = f"coalesce(_schema RLIKE '{_CONFORMING}', false)"
    return f"CASE WHEN {conforming} THEN false ELSE {' OR '.join(rules)} END"


def validate(bronze: DataFrame, observe_as: str = "silver_validation") -> DataFrame:
    """Adds the verdict of the event contract to bronze rows.

    Adds ``_json`` (the value as VARIANT, null when not JSON), ``_event_ts`` (parsed event time),
    ``reasons`` (every failed rule, in the contract's precedence order) and ``reason`` (the first
    one, null for a valid record). Field rules are checked only on JSON objects, so ``reasons``
    lists no consequence of an earlier structural failure.

    Args:
        bronze: Rows of ``bronze.events_raw``.
        observe_as: Name of the observed metrics (valid and rejected counts per batch). The
            observation also keeps the optimizer from pushing a later ``reason`` filter below
            the validation, which would copy the rules into the filter and evaluate them again.
    """
    skew_s = int(MAX_FUTURE_SKEW.total_seconds())
    df = bronze.withColumn("_json", F.expr("try_parse_json(value)"))
    # The record's type, once: the object test and the wrong-type check both read it.
    df = df.withColumn("_schema", F.expr("schema_of_variant(_json)"))
    df = df.withColumn("_is_object", F.expr("coalesce(_schema LIKE 'OBJECT%', false)"))
    df = df.withColumn("_event_time", F.expr("try_variant_get(_json, '$.event_time', 'string')"))
    pattern = EVENT_TIME_PATTERN.replace("\\", "\\\\")
    df = df.withColumn(
        "_event_ts",
        F.expr(f"CASE WHEN _event_time RLIKE '{pattern}' THEN try_to_timestamp(_event_time) END"),
    )
    url = "try_variant_get(_json, '$.url', 'string')"
    host = "try_variant_get(_json, '$.host', 'string')"
    ip = "try_variant_get(_json, '$.ip', 'string')"
    field = "_is_object AND NOT wrong_type AND "
    rules: dict[str, str] = {
        "invalid_utf8": "NOT is_valid_utf8",
        "oversized": f"coalesce(octet_length(value) > {MAX_PAYLOAD_BYTES}, false)",
        "not_json": "is_valid_utf8 AND _json IS NULL",
        "not_object": "_json IS NOT NULL AND NOT _is_object",
        "wrong_type": "_is_object AND wrong_type",
        "missing_event_time": field + f"coalesce({_type('$.event_time')}, 'VOID') = 'VOID'",
        "bad_event_time": field + "_event_time IS NOT NULL AND _event_ts IS NULL",
        "future_event_time": field
        + f"coalesce(_event_ts > kafka_ts + INTERVAL {skew_s} SECONDS, false)",
        "missing_url": field + f"coalesce({url}, '') = ''",
        "missing_host": field + f"coalesce({host}, '') = ''",
        "invalid_ip": field
        + f"NOT (coalesce({ip} RLIKE '{_escape(IPV4_PATTERN)}', false) OR "
        + f"coalesce({ip} RLIKE '{_escape(IPV6_PATTERN)}', false))",
    }
    assert tuple(rules) == REASON_CODES, "rules must follow the contract's precedence"
    df = df.withColumn("wrong_type", F.expr(_wrong_type_sql()))
    flagged = [F.when(F.expr(sql), F.lit(code)) for code, sql in rules.items()]
    df = df.withColumn("reasons", F.filter(F.array(*flagged), lambda r: r.isNotNull()))
    df = df.withColumn("reason", F.get(F.col("reasons"), 0)).drop("wrong_type", "_schema")
    return df.observe(
        observe_as,
        F.count_if(F.col("reason").isNull()).alias("valid"),
        F.count_if(F.col("reason").isNotNull()).alias("rejected"),
    )


def _escape(pattern: str) -> str:
    return pattern.replace("\\", "\\\\")


def quarantine(validated: DataFrame) -> DataFrame:
    """The rejected rows, in the columns of ``silver.events_quarantine``."""
    return validated.where(F.col("reason").isNotNull()).select(
        "reason",
        "reasons",
        "value",
        "value_raw",
        "key",
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_ts",
        "ingest_ts",
        F.current_timestamp().alias("quarantined_ts"),
    )


def _visitor_key(e: Column) -> Column:
    ua = e["user_agent"]
    material = F.concat_ws(
        "|",
        *[
            F.coalesce(c, F.lit(""))
            for c in (
                e["ip"],
                ua["family"],
                ua["major"],
                ua["minor"],
                ua["patch"],
                ua["os"]["family"],
                ua["os"]["major"],
                ua["device"]["family"],
            )
        ],
    )
    return (
        F.when(e["user_id"].isNotNull(), F.concat(F.lit("u:"), e["user_id"].cast("string")))
        .when(
            F.coalesce(e["anonymous_id"], F.lit("")) != "", F.concat(F.lit("a:"), e["anonymous_id"])
        )
        .otherwise(F.concat(F.lit("h:"), F.sha2(material, 256)))
    )


def normalise(validated: DataFrame) -> DataFrame:
    """The accepted rows, parsed with the explicit schema and flattened for analysis.

    Event id: ``event_id`` when given, else SHA-256 of the raw value. Visitor key: see
    ``webtraffic.contract.visitor_key``. URL parts and UTM parameters come from ``url``; header
    names are lower-cased.
    """
    df = validated.where(F.col("reason").isNull())
    e = F.from_json(F.col("value"), EVENT_SCHEMA)
    df = df.withColumn("_e", e)
    e = F.col("_e")
    url = e["url"]
    headers = F.transform_keys(e["headers"], lambda k, _v: F.lower(k))

    def url_part(column: Column, part: str, key: str | None = None) -> Column:
        args = [column, F.lit(part)] + ([F.lit(key)] if key else [])
        return F.call_function("try_parse_url", *args)

    ua = e["user_agent"]
    return df.select(
        event_id(e["event_id"]).alias("event_id"),
        F.coalesce(F.nullif(e["event_type"], F.lit("")), F.lit(DEFAULT_EVENT_TYPE)).alias(
            "event_type"
        ),
        F.col("_event_ts").alias("event_time"),
        _visitor_key(e).alias("visitor_key"),
        e["user_id"].isNotNull().alias("is_logged_in"),
        e["user_id"].alias("user_id"),
        e["anonymous_id"].alias("anonymous_id"),
        e["academy_id"].alias("academy_id"),
        e["host"].alias("host"),
        url.alias("url"),
        F.lower(url_part(url, "PROTOCOL")).alias("url_scheme"),
        F.lower(url_part(url, "HOST")).alias("url_host"),
        F.coalesce(F.nullif(url_part(url, "PATH"), F.lit("")), F.lit("/")).alias("url_path"),
        url_part(url, "QUERY").alias("url_query"),
        *[
            url_part(url, "QUERY", f"utm_{name}").alias(f"utm_{name}")
            for name in ("source", "medium", "campaign", "term", "content")
        ],
        e["referrer"].alias("referrer"),
        F.lower(url_part(e["referrer"], "HOST")).alias("referrer_host"),
        e["ip"].alias("ip"),
        ua["family"].alias("ua_family"),
        ua["major"].alias("ua_major"),
        ua["minor"].alias("ua_minor"),
        ua["patch"].alias("ua_patch"),
        ua["device"]["family"].alias("device_family"),
        ua["os"]["family"].alias("os_family"),
        ua["os"]["major"].alias("os_major"),
        ua["os"]["minor"].alias("os_minor"),
        headers["accept-language"].alias("accept_language"),
        headers.alias("headers"),
        "kafka_topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_ts",
        "ingest_ts",
        F.current_timestamp().alias("silver_ts"),
    )


def event_id(given: Column) -> Column:
    """The event id: the producer's ``event_id`` when given, else SHA-256 of the raw value."""
    return F.coalesce(F.nullif(given, F.lit("")), F.sha2(F.encode("value", "UTF-8"), 256))


def deduplicate(validated: DataFrame, watermark: str = DEDUP_WATERMARK) -> DataFrame:
    """Drops repeats of a valid event's id; every rejected record is kept.

    Runs on :func:`validate` output, before :func:`normalise` and :func:`quarantine` split it,
    so that one query (one validation) feeds both tables. Rejected rows are keyed by their Kafka
    coordinates, which are unique, so none is ever dropped as a repeat.

    Streaming: a repeat is dropped when bronze ingested it within ``watermark`` of the first
    copy (see :data:`DEDUP_WATERMARK`); the state holds each key until the watermark passes its
    ingestion time plus the delay, so it stays bounded. Batch: a plain distinct on the key (the
    first row is kept).
    """
    given = F.expr("try_variant_get(_json, '$.event_id', 'string')")
    key = F.when(F.col("reason").isNull(), F.concat(F.lit("e:"), event_id(given))).otherwise(
        F.concat_ws(
            "/",
            F.lit("q"),
            "kafka_topic",
            F.col("kafka_partition").cast("string"),
            F.col("kafka_offset").cast("string"),
        )
    )
    # The parsed VARIANT is not needed after this: no reason to shuffle it.
    keyed = validated.withColumn("_dedup_key", key).drop("_json")
    if keyed.isStreaming:
        deduplicated = keyed.withWatermark("ingest_ts", watermark).dropDuplicatesWithinWatermark(
            ["_dedup_key"]
        )
    else:
        deduplicated = keyed.dropDuplicates(["_dedup_key"])
    return deduplicated.drop("_dedup_key")
