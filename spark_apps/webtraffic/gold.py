"""Gold: enriched events, 1-minute traffic windows and visitor sessions.

Pure ``DataFrame -> DataFrame`` functions, indifferent to streaming or batch (the backfill job
replays past windows through exactly this code):

* :func:`enrich` adds the bot flag, device class, referrer class, page path and the anonymised
  IP to ``silver.events`` rows; :func:`project` keeps the columns of ``gold.events_enriched``
  once the geo columns are there (the geo lookup runs per micro-batch on the driver, see
  :func:`geo_step`) and drops the raw IP.
* :func:`traffic_minute` aggregates tumbling 1-minute event-time windows with a 30-second
  watermark (append mode: a window is emitted once, when the watermark passes its end).
* :func:`sessions` aggregates session windows with a 5-minute inactivity gap per visitor key,
  same watermark.

Both aggregations window, watermark and order on :func:`effective_event_time` (the event time,
but never later than the Kafka timestamp), so a client clock running ahead cannot move the
watermark. The delay is ``WEBTRAFFIC_GOLD_WATERMARK`` (``Settings.gold_watermark``). On a batch
DataFrame ``withWatermark`` is a no-op, so the aggregations see every row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from webtraffic.settings import DEFAULT_GOLD_WATERMARK

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from webtraffic.geo.chain import GeoChain

WATERMARK = DEFAULT_GOLD_WATERMARK
"""Default event-time watermark delay of the gold aggregations (``Settings.gold_watermark``)."""
WINDOW = "1 minute"
SESSION_GAP = "5 minutes"
EFFECTIVE_TIME = "_effective_event_time"
"""Working column of the aggregations holding :func:`effective_event_time` (never output)."""

BOT_PATTERN = (
    r"(?i)(bot\b|bot/|bot$|[a-z]bot|crawl|spider|slurp|headless|python|curl|wget|scrapy|"
    r"httpclient|okhttp|java/|go-http|libwww|phantomjs|facebookexternalhit|bingpreview|"
    r"mediapartners|apis-google|feedfetcher|lighthouse|pingdom|uptimerobot|monitor)"
)
"""Known bot and crawler patterns, matched against the user-agent and device families."""
BOT_DEVICE_FAMILIES = ("Spider",)
"""uap-core's device family of crawlers."""
TABLET_PATTERN = r"(?i)(ipad|tablet|\bsm-[tpx]\d|kindle|silk|nexus (7|9|10)\b|\btab\b|galaxy tab)"
MOBILE_OS = ("iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS")
MOBILE_PATTERN = r"(?i)(mobile|iphone|ipod|android|phone|opera mini)"

SEARCH_HOSTS = (
    "google", "bing", "duckduckgo", "yahoo", "yandex", "baidu", "ecosia", "qwant", "ask",
    "naver", "seznam", "startpage", "brave",
)  # fmt: skip
"""Second-level labels of search engines (``www.google.co.uk`` -> search)."""
SOCIAL_HOSTS = (
    "facebook.com", "fb.com", "t.co", "twitter.com", "x.com", "linkedin.com", "lnkd.in",
    "reddit.com", "instagram.com", "news.ycombinator.com", "pinterest.com", "tiktok.com",
    "youtube.com", "youtu.be", "mastodon.social", "threads.net", "bsky.app", "vk.com",
    "quora.com", "tumblr.com", "whatsapp.com", "telegram.org", "t.me",
)  # fmt: skip
"""Hosts (and their subdomains) of social networks."""

ENRICHED_COLUMNS = (
    "event_id", "event_type", "event_time", "visitor_key", "is_logged_in", "user_id",
    "anonymous_id", "academy_id", "host", "url", "page_path", "url_query", "utm_source",
    "utm_medium", "utm_campaign", "utm_term", "utm_content", "referrer", "referrer_host",
    "referrer_class", "ip_anonymised", "ip_version", "ua_family", "ua_major", "device_family",
    "os_family", "os_major", "device_class", "is_bot", "accept_language", "country_code",
    "country_name", "region", "city", "latitude", "longitude", "geo_source", "geo_status",
    "geo_data_version", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_ts",
    "ingest_ts", "silver_ts", "gold_ts",
)  # fmt: skip
"""Columns of ``gold.events_enriched`` (no raw IP, no request headers)."""

TRAFFIC_KEYS = ("window_start", "host", "country_code", "region", "city", "device_class")
"""Key of a ``gold.traffic_minute`` row (also its batch fingerprint)."""
SESSION_KEYS = ("session_id",)
"""Key of a ``gold.sessions`` row (also its batch fingerprint)."""


# --- enrichment ------------------------------------------------------------------------------


def is_bot(ua_family: Column, device_family: Column) -> Column:
    """True for crawlers and bots: uap's ``Spider`` device or a known bot pattern."""
    return (
        F.coalesce(device_family.isin(*BOT_DEVICE_FAMILIES), F.lit(False))
        | F.coalesce(ua_family.rlike(BOT_PATTERN), F.lit(False))
        | F.coalesce(device_family.rlike(BOT_PATTERN), F.lit(False))
    )


def device_class(
    ua_family: Column, device_family: Column, os_family: Column, bot: Column
) -> Column:
    """``bot``, ``tablet``, ``mobile`` or ``desktop`` from the parsed user agent."""
    device = F.coalesce(device_family, F.lit(""))
    ua = F.coalesce(ua_family, F.lit(""))
    return (
        F.when(bot, F.lit("bot"))
        .when(device.rlike(TABLET_PATTERN) | ua.rlike(TABLET_PATTERN), F.lit("tablet"))
        .when(
            F.coalesce(os_family.isin(*MOBILE_OS), F.lit(False))
            | device.rlike(MOBILE_PATTERN)
            | ua.rlike(MOBILE_PATTERN),
            F.lit("mobile"),
        )
        .otherwise(F.lit("desktop"))
    )


def _host_is(host: Column, domains: tuple[str, ...]) -> Column:
    """``host`` equals one of ``domains`` or is a subdomain of one."""
    checks = [(host == d) | host.endswith("." + d) for d in domains]
    out = checks[0]
    for check in checks[1:]:
        out = out | check
    return out


def referrer_class(referrer_host: Column, host: Column) -> Column:
    """``direct`` (no referrer), ``internal`` (same site), ``search``, ``social`` or ``other``."""
    ref = F.lower(F.regexp_replace(referrer_host, r"\.$", ""))
    site = F.lower(host)
    bare = F.regexp_replace(ref, r"^www\.", "")
    labels = "|".join(SEARCH_HOSTS)
    search = ref.rlike(rf"(^|\.)({labels})\.[a-z]{{2,3}}(\.[a-z]{{2}})?$")
    return (
        F.when(F.coalesce(ref, F.lit("")) == "", F.lit("direct"))
        .when((ref == site) | (bare == F.regexp_replace(site, r"^www\.", "")), F.lit("internal"))
        .when(search, F.lit("search"))
        .when(_host_is(ref, SOCIAL_HOSTS), F.lit("social"))
        .otherwise(F.lit("other"))
    )


def _hextet(group: Column) -> Column:
    """One IPv6 group in canonical form: lower case, no leading zeros."""
    return F.lower(F.conv(group, 16, 16))


def anonymise_ip(ip: Column) -> Column:
    """IPv4 with the last octet zeroed, IPv6 truncated to its /48 network (RFC 5952 text).

    Exact for every address form silver accepts (``::`` compression anywhere, an embedded IPv4
    tail — always the last 32 bits, so never inside the first 48), computed with Spark SQL
    functions only. Null for null.
    """
    text = F.lower(F.trim(ip))
    halves = F.split(text, "::", -1)
    has_gap = F.size(halves) == 2
    left = F.when(F.get(halves, 0) == "", F.array().cast("array<string>")).otherwise(
        F.split(F.get(halves, 0), ":")
    )
    right = F.when(has_gap & (F.get(halves, 1) != ""), F.split(F.get(halves, 1), ":")).otherwise(
        F.array().cast("array<string>")
    )
    # An IPv4 tail is one element standing for two groups.
    tail = F.when(text.contains("."), F.lit(1)).otherwise(F.lit(0))
    zeros = F.greatest(F.lit(8) - F.size(left) - F.size(right) - tail, F.lit(0))
    groups = F.slice(F.concat(left, F.array_repeat(F.lit("0"), zeros), right), 1, 3)
    g1, g2, g3 = (_hextet(F.get(groups, i)) for i in range(3))
    v6 = (
        F.when((g1 == "0") & (g2 == "0") & (g3 == "0"), F.lit("::"))
        .when((g2 == "0") & (g3 == "0"), F.concat(g1, F.lit("::")))
        .when(g3 == "0", F.concat_ws(":", g1, g2, F.lit(":")))
        .otherwise(F.concat_ws(":", g1, g2, g3, F.lit(":")))
    )
    v4 = F.regexp_replace(text, r"\.[0-9]+$", ".0")
    return F.when(ip.isNull(), F.lit(None)).when(text.contains(":"), v6).otherwise(v4)


def enrich(events: DataFrame) -> DataFrame:
    """Adds ``is_bot, device_class, referrer_class, page_path, ip_anonymised, ip_version``.

    Args:
        events: Rows of ``silver.events`` (stream or batch).

    Returns:
        The rows with the derived columns; the raw ``ip`` is still there for the geo lookup and
        leaves in :func:`project`.
    """
    bot = is_bot(F.col("ua_family"), F.col("device_family"))
    return (
        events.withColumn("is_bot", bot)
        .withColumn(
            "device_class",
            device_class(F.col("ua_family"), F.col("device_family"), F.col("os_family"), bot),
        )
        .withColumn("referrer_class", referrer_class(F.col("referrer_host"), F.col("host")))
        .withColumn("page_path", F.coalesce(F.col("url_path"), F.lit("/")))
        .withColumn("ip_anonymised", anonymise_ip(F.col("ip")))
        .withColumn(
            "ip_version",
            F.when(F.col("ip").contains(":"), F.lit(6)).when(F.col("ip").isNotNull(), F.lit(4)),
        )
    )


def project(geo_enriched: DataFrame) -> DataFrame:
    """The columns of ``gold.events_enriched``: :func:`enrich` output plus geo, no raw IP."""
    return geo_enriched.withColumn("gold_ts", F.current_timestamp()).select(*ENRICHED_COLUMNS)


def geo_step(chain: GeoChain) -> Callable[[DataFrame, int], DataFrame]:
    """The per-micro-batch step of the enriched stream: geo lookup, then :func:`project`.

    One chain per application (it holds the memory cache); the lookup collects the batch's
    distinct IPs to the driver and resolves only what the caches lack.
    """
    from webtraffic.geo.enrich import enrich_with_geo

    def step(batch: DataFrame, _batch_id: int) -> DataFrame:
        return project(enrich_with_geo(batch, chain))

    return step


# --- aggregations ----------------------------------------------------------------------------


def effective_event_time() -> Column:
    """The time the aggregations window and watermark on: ``least(event_time, kafka_ts)``.

    The contract accepts an ``event_time`` up to an hour after the Kafka timestamp
    (``contract.MAX_FUTURE_SKEW``): a client clock running ahead. On the raw event time one such
    event would lift Spark's watermark (max event time seen minus the delay) up to an hour ahead,
    and every on-time event after it would be dropped as late for that hour: a blank dashboard.
    A client cannot have produced an event after the broker received it, so an event claiming a
    later time is counted at its arrival (its Kafka timestamp) instead. For on-time and late
    events (``event_time <= kafka_ts``) nothing changes. ``least`` skips nulls, so a row without
    a Kafka timestamp keeps its event time.

    Returns:
        A timestamp column over ``event_time`` and ``kafka_ts``.
    """
    return F.least(F.col("event_time"), F.col("kafka_ts"))


def _with_effective_time(enriched: DataFrame, watermark: str) -> DataFrame:
    """``enriched`` with :data:`EFFECTIVE_TIME` and the watermark declared on it."""
    return enriched.withColumn(EFFECTIVE_TIME, effective_event_time()).withWatermark(
        EFFECTIVE_TIME, watermark
    )


def traffic_minute(enriched: DataFrame, watermark: str = WATERMARK) -> DataFrame:
    """Tumbling 1-minute windows by host × country × region × city × device class.

    Windows are on :func:`effective_event_time` (the event time, capped at the Kafka
    timestamp). ``unique_visitors`` is exact (the size of the set of visitor keys: a streaming
    aggregation cannot count distinct). In a stream, a window is emitted once, when the
    watermark (max effective event time seen minus ``watermark``) reaches its end; rows for a
    window already past the watermark are dropped and counted in
    ``ops.stream_progress.rows_dropped_by_watermark``.

    Args:
        enriched: Rows of ``gold.events_enriched`` (stream or batch).
        watermark: Watermark delay, a Spark interval such as ``"30 seconds"``.

    Returns:
        Rows of ``gold.traffic_minute``.
    """
    df = _with_effective_time(enriched, watermark)
    out = df.groupBy(
        F.window(EFFECTIVE_TIME, WINDOW).alias("w"),
        "host",
        "country_code",
        "region",
        "city",
        "device_class",
    ).agg(
        F.count(F.lit(1)).alias("events"),
        F.count_if(F.col("event_type") == "page_view").alias("page_views"),
        F.size(F.collect_set("visitor_key")).alias("unique_visitors"),
        F.count_if(F.col("is_bot")).alias("bot_events"),
        F.count_if(F.col("is_logged_in")).alias("logged_in_events"),
        F.min("kafka_ts").alias("first_kafka_ts"),
        F.max("kafka_ts").alias("last_kafka_ts"),
    )
    return out.select(
        F.col("w.start").alias("window_start"),
        F.col("w.end").alias("window_end"),
        "host",
        "country_code",
        "region",
        "city",
        "device_class",
        "events",
        "page_views",
        F.col("unique_visitors").cast("bigint").alias("unique_visitors"),
        "bot_events",
        "logged_in_events",
        "first_kafka_ts",
        "last_kafka_ts",
        F.current_timestamp().alias("computed_ts"),
    )


def _order() -> Column:
    """Order of a session's events: effective event time, then Kafka partition and offset."""
    return F.struct(EFFECTIVE_TIME, "kafka_partition", "kafka_offset")


def _first(column: str) -> Column:
    """The value of ``column`` on the session's first event (ties: the earlier Kafka record)."""
    return F.min_by(F.col(column), _order())


def _last(column: str) -> Column:
    """The value of ``column`` on the session's last event (ties: the later Kafka record)."""
    return F.max_by(F.col(column), _order())


def sessions(enriched: DataFrame, watermark: str = WATERMARK) -> DataFrame:
    """Session windows per visitor key: a 5-minute inactivity gap closes a session.

    Sessions, their first and last event times and the entry / exit order are all on
    :func:`effective_event_time` (the event time, capped at the Kafka timestamp). Spark's rule:
    each event opens ``[t, t + 5 min)`` and intervals that overlap or touch merge, so
    ``session_end`` is the last event plus the gap and events exactly 5 minutes apart stay in
    one session. Append mode: a session is emitted once the watermark passes its end.
    ``duration_s`` is the time between the first and the last event.

    Args:
        enriched: Rows of ``gold.events_enriched`` (stream or batch).
        watermark: Watermark delay, a Spark interval such as ``"30 seconds"``.

    Returns:
        Rows of ``gold.sessions``.
    """
    df = _with_effective_time(enriched, watermark)
    out = df.groupBy(F.session_window(EFFECTIVE_TIME, SESSION_GAP).alias("s"), "visitor_key").agg(
        F.bool_or("is_logged_in").alias("is_logged_in"),
        F.min(EFFECTIVE_TIME).alias("first_event_time"),
        F.max(EFFECTIVE_TIME).alias("last_event_time"),
        F.count(F.lit(1)).alias("events"),
        F.count_if(F.col("event_type") == "page_view").alias("page_views"),
        F.size(F.collect_set("page_path")).alias("distinct_pages"),
        _first("page_path").alias("entry_page"),
        _last("page_path").alias("exit_page"),
        _first("host").alias("host"),
        _first("referrer_class").alias("referrer_class"),
        _first("referrer_host").alias("referrer_host"),
        _first("country_code").alias("country_code"),
        _first("region").alias("region"),
        _first("city").alias("city"),
        _first("device_class").alias("device_class"),
        F.bool_or("is_bot").alias("is_bot"),
    )
    start = F.col("s.start")
    return out.select(
        F.substring(
            F.sha2(F.concat_ws("|", "visitor_key", F.unix_micros(start).cast("string")), 256),
            1,
            32,
        ).alias("session_id"),
        "visitor_key",
        "is_logged_in",
        start.alias("session_start"),
        F.col("s.end").alias("session_end"),
        "first_event_time",
        "last_event_time",
        (F.unix_micros("last_event_time") - F.unix_micros("first_event_time"))
        .cast("double")
        .__truediv__(1_000_000)
        .alias("duration_s"),
        "events",
        "page_views",
        F.col("distinct_pages").cast("bigint").alias("distinct_pages"),
        "entry_page",
        "exit_page",
        (F.col("page_views") == 1).alias("is_bounce"),
        "host",
        "referrer_class",
        "referrer_host",
        "country_code",
        "region",
        "city",
        "device_class",
        "is_bot",
        F.current_timestamp().alias("computed_ts"),
    )
