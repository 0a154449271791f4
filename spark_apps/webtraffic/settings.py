"""One settings object for the whole pipeline, read from the environment.

Two profiles share every code path:

* ``local`` (the embedded default): a Kafka broker on 127.0.0.1 run from Maven jars, pyspark
  ``local[*]`` with the Kafka and Iceberg jars, an Iceberg JDBC catalog on a SQLite file. Everything
  a run writes lives under one state folder (``.state/`` in the project unless
  ``WEBTRAFFIC_STATE_DIR`` says otherwise), so ``make clean`` really resets it.
* ``databricks``: a managed Kafka over SASL_SSL, Unity Catalog (or any catalog Spark already knows),
  checkpoints on a volume. Credentials come from the environment, which a Databricks job fills from
  a secret scope (``{{secrets/scope/key}}``); they never live in the repo and never print.

Every variable is listed in ``ENVIRONMENT_VARIABLES`` (and in the README).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from webtraffic.errors import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (``spark_apps/webtraffic/settings.py`` is two levels below it)."""

Profile = Literal["local", "databricks"]
PROFILES: tuple[Profile, ...] = ("local", "databricks")

ENVIRONMENT_VARIABLES: dict[str, str] = {
    "WEBTRAFFIC_PROFILE": "local (default) or databricks",
    "WEBTRAFFIC_STATE_DIR": "folder for everything a local run writes (default: <repo>/.state)",
    "WEBTRAFFIC_JARS_DIR": "jars fetched by Maven (default: <state>/jars)",
    "WEBTRAFFIC_KAFKA_PORT": "local broker client port (default 19092)",
    "WEBTRAFFIC_KAFKA_CONTROLLER_PORT": "local broker KRaft controller port (default 19093)",
    "WEBTRAFFIC_KAFKA_BOOTSTRAP": "bootstrap servers (databricks: required; local 127.0.0.1:PORT)",
    "WEBTRAFFIC_KAFKA_TOPIC": "events topic (default web.events)",
    "WEBTRAFFIC_KAFKA_PARTITIONS": "partitions of the events topic when created (default 3)",
    "WEBTRAFFIC_KAFKA_SASL_MECHANISM": "databricks: SASL mechanism (default PLAIN)",
    "WEBTRAFFIC_KAFKA_SASL_USERNAME": "databricks: SASL user name (secret)",
    "WEBTRAFFIC_KAFKA_SASL_PASSWORD": "databricks: SASL password (secret)",
    "WEBTRAFFIC_CATALOG": "Iceberg / Unity catalog name (default webtraffic)",
    "WEBTRAFFIC_CHECKPOINT_ROOT": "streaming checkpoints (databricks: required, a volume path)",
    "WEBTRAFFIC_SPARK_MASTER": "local Spark master (default local[*])",
    "WEBTRAFFIC_SPARK_DRIVER_MEMORY": "local Spark driver memory (default 2g)",
    "WEBTRAFFIC_SPARK_SHUFFLE_PARTITIONS": "spark.sql.shuffle.partitions (default 4)",
    "WEBTRAFFIC_AIRFLOW_PORT": "local Airflow API/UI port (default 8080)",
    "WEBTRAFFIC_GOLD_WATERMARK": "watermark delay of gold.traffic_minute and gold.sessions, "
    "a positive interval such as '30 seconds' or '2 minutes' (default 30 seconds)",
    "WEBTRAFFIC_GEO_PROVIDER": "geo resolver: auto (ipinfo if a token is set, else offline), "
    "offline or ipinfo",
    "WEBTRAFFIC_GEO_DB_DIR": "offline DB-IP City Lite MMDB files (default: <state>/geo)",
    "WEBTRAFFIC_GEO_OFFLINE_FALLBACK": "answer from the offline DB when ipinfo fails (default 1)",
    "WEBTRAFFIC_GEO_CACHE_TABLE": "Iceberg geo-cache table (default ref.geo_cache)",
    "WEBTRAFFIC_GEO_MEMORY_CACHE_SIZE": "in-process TTL cache entries (default 65536)",
    "WEBTRAFFIC_GEO_MEMORY_CACHE_TTL_SECONDS": "in-process TTL cache lifetime (default 3600)",
    "WEBTRAFFIC_GEO_TTL_SECONDS": "lifetime of a resolved geo-cache entry (default 2592000 = 30 d)",
    "WEBTRAFFIC_GEO_RETRY_SECONDS": "retry time of a pending / fallback entry (default 900)",
    "WEBTRAFFIC_IPINFO_TOKEN": "ipinfo.io API token (secret); enables the ipinfo resolver",
    "WEBTRAFFIC_IPINFO_URL": "ipinfo API base URL (default https://ipinfo.io)",
    "WEBTRAFFIC_IPINFO_TIMEOUT_SECONDS": "timeout of one GET /{ip} (default 2)",
    "WEBTRAFFIC_IPINFO_BATCH_TIMEOUT_SECONDS": "timeout of one POST /batch (default 5)",
    "WEBTRAFFIC_IPINFO_BATCH_SIZE": "addresses per POST /batch, at most 1000 (default 1000)",
    "WEBTRAFFIC_IPINFO_RETRIES": "retries on 429/5xx/connection errors (default 3)",
    "WEBTRAFFIC_IPINFO_BACKOFF_SECONDS": "first retry delay, doubled each time (default 0.5)",
    "WEBTRAFFIC_IPINFO_BACKOFF_MAX_SECONDS": "longest retry wait; a longer Retry-After opens the "
    "breaker instead (default 8)",
    "WEBTRAFFIC_IPINFO_BUDGET_SECONDS": "most time one call may spend on ipinfo (default 20)",
    "WEBTRAFFIC_IPINFO_BREAKER_FAILURES": "failed calls in a row that open the breaker (default 3)",
    "WEBTRAFFIC_IPINFO_BREAKER_RESET_SECONDS": "open breaker waits this long before a trial "
    "(default 60)",
}


class Secret:
    """A credential that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """Returns the secret value; pass it straight to the client that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """Reads an integer variable in ``[low, high]``; ``default`` when unset or blank.

    Raises:
        SettingsError: The value is not an integer or out of range (one line, names the variable).
    """
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _env_float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return value


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1/0 (or true/false), got {raw!r}")


def _env_str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


DEFAULT_GOLD_WATERMARK = "30 seconds"
"""Default watermark delay of the gold aggregations (``WEBTRAFFIC_GOLD_WATERMARK``)."""

INTERVAL_UNITS_MS: dict[str, int] = {
    "millisecond": 1,
    "second": 1000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 7 * 86_400_000,
}
"""Units :func:`interval_ms` accepts (singular or plural), in milliseconds."""
_WHOLE_NUMBER = re.compile(r"[0-9]+")


def interval_ms(text: str) -> int | None:
    """Milliseconds of an interval such as ``"30 seconds"`` or ``"1 minute 30 seconds"``.

    A subset of what Spark's interval parser (``withWatermark``) accepts: one or more pairs of a
    whole number and a unit of :data:`INTERVAL_UNITS_MS`, case-insensitive.

    Returns:
        The interval in milliseconds, or None when ``text`` is not such an interval.
    """
    words = text.strip().lower().split()
    if not words or len(words) % 2:
        return None
    total = 0
    for number, unit in zip(words[::2], words[1::2], strict=True):
        size = INTERVAL_UNITS_MS.get(unit.removesuffix("s"))
        if size is None or not _WHOLE_NUMBER.fullmatch(number):
            return None
        total += int(number) * size
    return total


def _env_interval(env: Mapping[str, str], name: str, default: str) -> str:
    """Reads a positive interval variable; returns it normalised (lower case, single spaces).

    Raises:
        SettingsError: The value is not a positive interval (one line, names the variable).
    """
    raw = _env_str(env, name, default)
    ms = interval_ms(raw)
    if not ms:
        units = ", ".join(f"{unit}s" for unit in INTERVAL_UNITS_MS)
        raise SettingsError(
            f"{name} must be a positive interval such as '30 seconds' or '2 minutes' "
            f"(whole numbers of {units}), got {raw!r}"
        )
    return " ".join(raw.lower().split())


@dataclass(frozen=True)
class KafkaSettings:
    """Where the events topic lives and how to reach it.

    Attributes:
        bootstrap_servers: ``host:port[,host:port]``.
        topic: The events topic.
        partitions: Partition count used when this project creates the topic.
        port: Client port of the local broker (local profile only).
        controller_port: KRaft controller port of the local broker (local profile only).
        security_protocol: ``PLAINTEXT`` locally, ``SASL_SSL`` on a managed Kafka.
        sasl_mechanism: SASL mechanism for ``SASL_SSL``.
        sasl_username: SASL user, from the environment or a secret scope.
        sasl_password: SASL password, from the environment or a secret scope.
    """

    bootstrap_servers: str
    topic: str = "web.events"
    partitions: int = 3
    port: int = 19092
    controller_port: int = 19093
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: Secret | None = field(default=None, repr=False)
    sasl_password: Secret | None = field(default=None, repr=False)

    def client_config(self) -> dict[str, str]:
        """Returns librdkafka (confluent-kafka) settings for this cluster."""
        config = {"bootstrap.servers": self.bootstrap_servers}
        if self.security_protocol != "PLAINTEXT":
            config["security.protocol"] = self.security_protocol
            config["sasl.mechanisms"] = self.sasl_mechanism
            if self.sasl_username and self.sasl_password:
                config["sasl.username"] = self.sasl_username.get()
                config["sasl.password"] = self.sasl_password.get()
        return config

    def spark_options(self) -> dict[str, str]:
        """Returns options for Spark's Kafka source (``kafka.``-prefixed consumer settings)."""
        options = {"kafka.bootstrap.servers": self.bootstrap_servers}
        if self.security_protocol != "PLAINTEXT":
            options["kafka.security.protocol"] = self.security_protocol
            options["kafka.sasl.mechanism"] = self.sasl_mechanism
            if self.sasl_username and self.sasl_password:
                user = self.sasl_username.get().replace('"', '\\"')
                password = self.sasl_password.get().replace('"', '\\"')
                options["kafka.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'username="{user}" password="{password}";'
                )
        return options


GeoProvider = Literal["auto", "offline", "ipinfo"]
GEO_PROVIDERS: tuple[GeoProvider, ...] = ("auto", "offline", "ipinfo")


@dataclass(frozen=True)
class GeoSettings:
    """IP geolocation: resolvers, caches and the ipinfo client's manners.

    Attributes:
        provider: ``auto`` (ipinfo when a token is set, else offline), ``offline`` or ``ipinfo``.
        offline_dir: Folder with the DB-IP City Lite MMDB files (fetched by ``make setup``).
        offline_fallback: Answer from the offline database what ipinfo could not.
        cache_table: The Iceberg geo-cache table.
        memory_cache_size: Entries of the in-process TTL cache.
        memory_cache_ttl_seconds: Lifetime of an in-process cache entry.
        ttl_seconds: Lifetime of a resolved entry in the cache table.
        retry_seconds: When a pending (or offline-fallback) entry is asked again.
        ipinfo_token: ipinfo.io token, from the environment or a secret scope; never printed.
        ipinfo_url: ipinfo API base URL (a local double in tests and benchmarks).
        ipinfo_timeout_seconds: Timeout of one ``GET /{ip}``.
        ipinfo_batch_timeout_seconds: Timeout of one ``POST /batch``.
        ipinfo_batch_size: Addresses per batch request (ipinfo accepts at most 1,000).
        ipinfo_retries: Retries of one request on 429, 5xx and connection errors.
        ipinfo_backoff_seconds: First retry delay; doubles with each retry.
        ipinfo_backoff_max_seconds: Longest single delay; a longer ``Retry-After`` is not awaited.
        ipinfo_budget_seconds: Most time one resolver call may spend on ipinfo in total.
        breaker_failures: Failed calls in a row that open the circuit breaker.
        breaker_reset_seconds: How long an open breaker refuses calls before one trial.
    """

    offline_dir: Path = field(default=Path())
    provider: GeoProvider = "auto"
    offline_fallback: bool = True
    cache_table: str = "ref.geo_cache"
    memory_cache_size: int = 65536
    memory_cache_ttl_seconds: float = 3600.0
    ttl_seconds: float = 30 * 24 * 3600.0
    retry_seconds: float = 900.0
    ipinfo_token: Secret | None = field(default=None, repr=False)
    ipinfo_url: str = "https://ipinfo.io"
    ipinfo_timeout_seconds: float = 2.0
    ipinfo_batch_timeout_seconds: float = 5.0
    ipinfo_batch_size: int = 1000
    ipinfo_retries: int = 3
    ipinfo_backoff_seconds: float = 0.5
    ipinfo_backoff_max_seconds: float = 8.0
    ipinfo_budget_seconds: float = 20.0
    breaker_failures: int = 3
    breaker_reset_seconds: float = 60.0

    @property
    def effective_provider(self) -> Literal["offline", "ipinfo"]:
        """The resolver in use: ``auto`` means ipinfo when a token is configured."""
        if self.provider == "auto":
            return "ipinfo" if self.ipinfo_token else "offline"
        return self.provider

    @classmethod
    def from_env(cls, env: Mapping[str, str], state_dir: Path) -> GeoSettings:
        """Reads the ``WEBTRAFFIC_GEO_*`` and ``WEBTRAFFIC_IPINFO_*`` variables.

        Args:
            env: The environment variables.
            state_dir: The state folder (the offline database lives in ``<state>/geo``).

        Returns:
            The validated geo settings.

        Raises:
            SettingsError: A value is malformed.
        """
        provider = _env_str(env, "WEBTRAFFIC_GEO_PROVIDER", "auto")
        if provider not in GEO_PROVIDERS:
            raise SettingsError(
                f"WEBTRAFFIC_GEO_PROVIDER must be one of {', '.join(GEO_PROVIDERS)}, "
                f"got {provider!r}"
            )
        token = env.get("WEBTRAFFIC_IPINFO_TOKEN", "").strip()
        if provider == "ipinfo" and not token:
            raise SettingsError("WEBTRAFFIC_GEO_PROVIDER=ipinfo needs WEBTRAFFIC_IPINFO_TOKEN")
        url = _env_str(env, "WEBTRAFFIC_IPINFO_URL", "https://ipinfo.io").rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"WEBTRAFFIC_IPINFO_URL must be an http(s) URL, got {url!r}")
        table = _env_str(env, "WEBTRAFFIC_GEO_CACHE_TABLE", "ref.geo_cache")
        if table.count(".") < 1:
            raise SettingsError(
                f"WEBTRAFFIC_GEO_CACHE_TABLE must be namespace.table, got {table!r}"
            )
        day = 24 * 3600.0
        return cls(
            offline_dir=Path(_env_str(env, "WEBTRAFFIC_GEO_DB_DIR", str(state_dir / "geo")))
            .expanduser()
            .resolve(),
            provider=provider,  # type: ignore[arg-type]
            offline_fallback=_env_bool(env, "WEBTRAFFIC_GEO_OFFLINE_FALLBACK", True),
            cache_table=table,
            memory_cache_size=env_int(env, "WEBTRAFFIC_GEO_MEMORY_CACHE_SIZE", 65536, 1, 10**8),
            memory_cache_ttl_seconds=_env_float(
                env, "WEBTRAFFIC_GEO_MEMORY_CACHE_TTL_SECONDS", 3600.0, 0.001, 365 * day
            ),
            ttl_seconds=_env_float(env, "WEBTRAFFIC_GEO_TTL_SECONDS", 30 * day, 1.0, 3650 * day),
            retry_seconds=_env_float(env, "WEBTRAFFIC_GEO_RETRY_SECONDS", 900.0, 1.0, 30 * day),
            ipinfo_token=Secret(token) if token else None,
            ipinfo_url=url,
            ipinfo_timeout_seconds=_env_float(
                env, "WEBTRAFFIC_IPINFO_TIMEOUT_SECONDS", 2.0, 0.01, 600.0
            ),
            ipinfo_batch_timeout_seconds=_env_float(
                env, "WEBTRAFFIC_IPINFO_BATCH_TIMEOUT_SECONDS", 5.0, 0.01, 600.0
            ),
            ipinfo_batch_size=env_int(env, "WEBTRAFFIC_IPINFO_BATCH_SIZE", 1000, 1, 1000),
            ipinfo_retries=env_int(env, "WEBTRAFFIC_IPINFO_RETRIES", 3, 0, 20),
            ipinfo_backoff_seconds=_env_float(
                env, "WEBTRAFFIC_IPINFO_BACKOFF_SECONDS", 0.5, 0.0, 600.0
            ),
            ipinfo_backoff_max_seconds=_env_float(
                env, "WEBTRAFFIC_IPINFO_BACKOFF_MAX_SECONDS", 8.0, 0.0, 3600.0
            ),
            ipinfo_budget_seconds=_env_float(
                env, "WEBTRAFFIC_IPINFO_BUDGET_SECONDS", 20.0, 0.01, 3600.0
            ),
            breaker_failures=env_int(env, "WEBTRAFFIC_IPINFO_BREAKER_FAILURES", 3, 1, 1000),
            breaker_reset_seconds=_env_float(
                env, "WEBTRAFFIC_IPINFO_BREAKER_RESET_SECONDS", 60.0, 0.001, 7 * day
            ),
        )


@dataclass(frozen=True)
class Settings:
    """Configuration of one deployment of the pipeline.

    Build it with :meth:`from_env`; pass it down instead of reading the environment elsewhere.

    Attributes:
        profile: ``local`` or ``databricks``.
        state_dir: Root of everything a local run writes.
        kafka: Kafka cluster and topic.
        catalog_name: Name of the Iceberg catalog, the same for Spark and pyiceberg.
        checkpoint_root: Root folder of the streaming checkpoints.
        spark_master: Spark master URL for the local profile.
        spark_driver_memory: Driver heap for the local profile.
        spark_shuffle_partitions: ``spark.sql.shuffle.partitions``.
        airflow_port: Port of the local Airflow API server / UI.
        gold_watermark: Watermark delay of the gold aggregations (``gold.traffic_minute``,
            ``gold.sessions``), a Spark interval such as ``"30 seconds"``.
        project_root: The repository (for ``dags/`` and ``plugins/``).
        jars_dir: Jars fetched from Maven Central (``jvm/pom.xml``): ``broker/`` and ``spark/``.
        geo: IP geolocation (resolvers, caches, ipinfo client).
    """

    def __post_init__(self) -> None:
        if self.jars_dir == Path():
            object.__setattr__(self, "jars_dir", self.state_dir / "jars")
        if self.geo.offline_dir == Path():
            object.__setattr__(
                self, "geo", dataclasses.replace(self.geo, offline_dir=self.state_dir / "geo")
            )

    profile: Profile
    state_dir: Path
    kafka: KafkaSettings
    catalog_name: str = "webtraffic"
    checkpoint_root: str = ""
    spark_master: str = "local[*]"
    spark_driver_memory: str = "2g"
    spark_shuffle_partitions: int = 4
    airflow_port: int = 8080
    gold_watermark: str = DEFAULT_GOLD_WATERMARK
    project_root: Path = PROJECT_ROOT
    jars_dir: Path = field(default=Path())
    geo: GeoSettings = field(default_factory=GeoSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Reads the settings from environment variables (see ``ENVIRONMENT_VARIABLES``).

        Args:
            environ: The variables to read; ``os.environ`` when omitted.

        Returns:
            The validated settings.

        Raises:
            SettingsError: A value is malformed or a required one is missing.
        """
        env = os.environ if environ is None else environ
        profile = _env_str(env, "WEBTRAFFIC_PROFILE", "local")
        if profile not in PROFILES:
            raise SettingsError(
                f"WEBTRAFFIC_PROFILE must be one of {', '.join(PROFILES)}, got {profile!r}"
            )
        state_dir = Path(_env_str(env, "WEBTRAFFIC_STATE_DIR", str(PROJECT_ROOT / ".state")))
        state_dir = state_dir.expanduser().resolve()
        port = env_int(env, "WEBTRAFFIC_KAFKA_PORT", 19092, 1, 65535)
        controller_port = env_int(env, "WEBTRAFFIC_KAFKA_CONTROLLER_PORT", 19093, 1, 65535)
        if port == controller_port:
            raise SettingsError(
                "WEBTRAFFIC_KAFKA_PORT and WEBTRAFFIC_KAFKA_CONTROLLER_PORT must differ, "
                f"both are {port}"
            )
        topic = _env_str(env, "WEBTRAFFIC_KAFKA_TOPIC", "web.events")
        partitions = env_int(env, "WEBTRAFFIC_KAFKA_PARTITIONS", 3, 1, 1000)
        checkpoint_root = env.get("WEBTRAFFIC_CHECKPOINT_ROOT", "").strip()

        if profile == "local":
            kafka = KafkaSettings(
                bootstrap_servers=_env_str(env, "WEBTRAFFIC_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}"),
                topic=topic,
                partitions=partitions,
                port=port,
                controller_port=controller_port,
            )
            checkpoint_root = checkpoint_root or str(state_dir / "checkpoints")
        else:
            bootstrap = env.get("WEBTRAFFIC_KAFKA_BOOTSTRAP", "").strip()
            if not bootstrap:
                raise SettingsError(
                    "the databricks profile needs WEBTRAFFIC_KAFKA_BOOTSTRAP (host:port of the "
                    "managed Kafka)"
                )
            if not checkpoint_root:
                raise SettingsError(
                    "the databricks profile needs WEBTRAFFIC_CHECKPOINT_ROOT "
                    "(for example /Volumes/<catalog>/<schema>/checkpoints)"
                )
            username = env.get("WEBTRAFFIC_KAFKA_SASL_USERNAME", "")
            password = env.get("WEBTRAFFIC_KAFKA_SASL_PASSWORD", "")
            kafka = KafkaSettings(
                bootstrap_servers=bootstrap,
                topic=topic,
                partitions=partitions,
                port=port,
                controller_port=controller_port,
                security_protocol="SASL_SSL",
                sasl_mechanism=_env_str(env, "WEBTRAFFIC_KAFKA_SASL_MECHANISM", "PLAIN"),
                sasl_username=Secret(username) if username else None,
                sasl_password=Secret(password) if password else None,
            )

        return cls(
            profile=profile,  # type: ignore[arg-type]
            state_dir=state_dir,
            kafka=kafka,
            catalog_name=_env_str(env, "WEBTRAFFIC_CATALOG", "webtraffic"),
            checkpoint_root=checkpoint_root,
            spark_master=_env_str(env, "WEBTRAFFIC_SPARK_MASTER", "local[*]"),
            spark_driver_memory=_env_str(env, "WEBTRAFFIC_SPARK_DRIVER_MEMORY", "2g"),
            spark_shuffle_partitions=env_int(
                env, "WEBTRAFFIC_SPARK_SHUFFLE_PARTITIONS", 4, 1, 10000
            ),
            airflow_port=env_int(env, "WEBTRAFFIC_AIRFLOW_PORT", 8080, 1, 65535),
            gold_watermark=_env_interval(env, "WEBTRAFFIC_GOLD_WATERMARK", DEFAULT_GOLD_WATERMARK),
            jars_dir=Path(_env_str(env, "WEBTRAFFIC_JARS_DIR", str(state_dir / "jars"))).resolve(),
            geo=GeoSettings.from_env(env, state_dir),
        )

    # Folders of the local profile, all under the state folder.

    @property
    def broker_jars_dir(self) -> Path:
        """Classpath of the local Kafka broker (kept apart from Spark's)."""
        return self.jars_dir / "broker"

    @property
    def spark_jars_dir(self) -> Path:
        """Extra jars for Spark: Kafka source, Iceberg runtime, SQLite JDBC."""
        return self.jars_dir / "spark"

    @property
    def kafka_dir(self) -> Path:
        """Local broker: config, data, log and pid file."""
        return self.state_dir / "kafka"

    @property
    def catalog_db(self) -> Path:
        """SQLite file of the Iceberg JDBC catalog."""
        return self.state_dir / "catalog" / "catalog.db"

    @property
    def warehouse_dir(self) -> Path:
        """Data and metadata files of the Iceberg tables."""
        return self.state_dir / "warehouse"

    @property
    def airflow_home(self) -> Path:
        """``AIRFLOW_HOME`` of the local Airflow."""
        return self.state_dir / "airflow"

    @property
    def logs_dir(self) -> Path:
        """Logs of processes started by the project (streaming apps, Airflow)."""
        return self.state_dir / "logs"


def use_isolated_stack(state_dir: Path, **overrides: str) -> Settings:
    """Points this process at a local stack of its own (tests, benchmarks).

    The state goes to ``state_dir``, the broker to two free ports; the fetched jars and the
    offline geo database of the current state folder are reused. Sets the variables in
    ``os.environ`` (so CLI subprocesses and DAG tasks see the same stack) and returns the settings.

    Args:
        state_dir: Folder for the isolated stack's state (created).
        overrides: Further ``WEBTRAFFIC_*`` variables, e.g. ``WEBTRAFFIC_SPARK_MASTER``.
    """
    from webtraffic.processes import free_port

    base = Settings.from_env()
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    os.environ.update(
        {
            "WEBTRAFFIC_PROFILE": "local",
            "WEBTRAFFIC_STATE_DIR": str(state_dir),
            "WEBTRAFFIC_JARS_DIR": str(base.jars_dir),
            "WEBTRAFFIC_GEO_DB_DIR": str(base.geo.offline_dir),
            "WEBTRAFFIC_KAFKA_PORT": str(port),
            "WEBTRAFFIC_KAFKA_CONTROLLER_PORT": str(controller_port),
            **overrides,
        }
    )
    os.environ.pop("WEBTRAFFIC_KAFKA_BOOTSTRAP", None)
    return Settings.from_env()
