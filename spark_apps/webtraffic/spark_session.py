"""The one place a SparkSession is built, for both profiles.

Local: ``local[*]`` (configurable), the Kafka source and Iceberg runtime jars from
``<state>/jars/spark``, Iceberg's SQL extensions, and the Iceberg JDBC catalog on the SQLite file
that pyiceberg also opens (``catalog.py``). Databricks: the cluster's session, pointed at the
configured catalog; the runtime brings its own connectors.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from webtraffic.catalog import prepare_local_catalog
from webtraffic.errors import WebtrafficError
from webtraffic.kafka_broker import find_java
from webtraffic.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
REQUIRED_JAR_PREFIXES = (
    "spark-sql-kafka-0-10_2.13-",
    "spark-token-provider-kafka-0-10_2.13-",
    "kafka-clients-",
    "commons-pool2-",
    "iceberg-spark-runtime-4.1_2.13-",
    "sqlite-jdbc-",
)


def local_spark_conf(settings: Settings, app_name: str = "webtraffic") -> dict[str, str]:
    """Returns the Spark configuration of the local profile.

    Raises:
        WebtrafficError: The jars have not been fetched yet.
    """
    jars = sorted(settings.spark_jars_dir.glob("*.jar"))
    names = [jar.name for jar in jars]
    missing = [p for p in REQUIRED_JAR_PREFIXES if not any(n.startswith(p) for n in names)]
    if missing:
        raise WebtrafficError(
            f"Spark jars missing in {settings.spark_jars_dir} ({', '.join(missing)}...); "
            "run `make setup` (it needs Maven) first"
        )
    cat = f"spark.sql.catalog.{settings.catalog_name}"
    return {
        "spark.app.name": app_name,
        "spark.master": settings.spark_master,
        "spark.jars": ",".join(str(jar) for jar in jars),
        # Without these Spark binds to the machine's external interface.
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.ui.showConsoleProgress": "false",
        # Header names are lower-cased in silver; two spellings of one header keep the last.
        "spark.sql.mapKeyDedupPolicy": "LAST_WIN",
        "spark.sql.extensions": ICEBERG_EXTENSIONS,
        "spark.sql.defaultCatalog": settings.catalog_name,
        cat: "org.apache.iceberg.spark.SparkCatalog",
        f"{cat}.type": "jdbc",
        f"{cat}.uri": f"jdbc:sqlite:{settings.catalog_db}",
        f"{cat}.warehouse": settings.warehouse_dir.as_uri(),
        # One connection per JVM: SQLite allows one writer at a time (WAL readers do not block).
        f"{cat}.clients": "1",
        # Other processes (pyiceberg, Airflow maintenance) commit to the same tables: no stale
        # table cache in a long-running app.
        f"{cat}.cache-enabled": "false",
        # V1 catalog schema (with iceberg_type), the same that pyiceberg is told to use.
        f"{cat}.jdbc.schema-version": "V1",
        "spark.sql.warehouse.dir": str(settings.state_dir / "spark-warehouse"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={settings.state_dir / 'derby'}",
    }


def build_spark_session(
    settings: Settings,
    app_name: str = "webtraffic",
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """Returns the SparkSession for the configured profile (creating it if needed).

    Args:
        settings: Project settings.
        app_name: Spark application name (shown in the Spark UI and logs).
        extra_conf: Settings that override the profile's (for tests and benchmarks).

    Returns:
        A session whose default catalog is the project's Iceberg catalog.
    """
    from pyspark.sql import SparkSession

    if settings.profile == "databricks":
        spark = SparkSession.builder.getOrCreate()
        spark.catalog.setCurrentCatalog(settings.catalog_name)
        for key, value in (extra_conf or {}).items():
            spark.conf.set(key, value)
        return spark

    java = find_java()
    # pyspark starts the JVM with JAVA_HOME's java if set, else the first java on PATH.
    os.environ.setdefault("JAVA_HOME", os.path.dirname(os.path.dirname(os.path.realpath(java))))
    prepare_local_catalog(settings)
    builder = SparkSession.builder
    for key, value in {**local_spark_conf(settings, app_name), **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
