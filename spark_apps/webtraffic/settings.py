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

import os
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


def _env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
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


def _env_str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


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
        project_root: The repository (for ``dags/`` and ``plugins/``).
        jars_dir: Jars fetched from Maven Central (``jvm/pom.xml``): ``broker/`` and ``spark/``.
    """

    def __post_init__(self) -> None:
        if self.jars_dir == Path():
            object.__setattr__(self, "jars_dir", self.state_dir / "jars")

    profile: Profile
    state_dir: Path
    kafka: KafkaSettings
    catalog_name: str = "webtraffic"
    checkpoint_root: str = ""
    spark_master: str = "local[*]"
    spark_driver_memory: str = "2g"
    spark_shuffle_partitions: int = 4
    airflow_port: int = 8080
    project_root: Path = PROJECT_ROOT
    jars_dir: Path = field(default=Path())

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
        port = _env_int(env, "WEBTRAFFIC_KAFKA_PORT", 19092, 1, 65535)
        controller_port = _env_int(env, "WEBTRAFFIC_KAFKA_CONTROLLER_PORT", 19093, 1, 65535)
        if port == controller_port:
            raise SettingsError(
                "WEBTRAFFIC_KAFKA_PORT and WEBTRAFFIC_KAFKA_CONTROLLER_PORT must differ, "
                f"both are {port}"
            )
        topic = _env_str(env, "WEBTRAFFIC_KAFKA_TOPIC", "web.events")
        partitions = _env_int(env, "WEBTRAFFIC_KAFKA_PARTITIONS", 3, 1, 1000)
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
            spark_shuffle_partitions=_env_int(
                env, "WEBTRAFFIC_SPARK_SHUFFLE_PARTITIONS", 4, 1, 10000
            ),
            airflow_port=_env_int(env, "WEBTRAFFIC_AIRFLOW_PORT", 8080, 1, 65535),
            jars_dir=Path(_env_str(env, "WEBTRAFFIC_JARS_DIR", str(state_dir / "jars"))).resolve(),
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
