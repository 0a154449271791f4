"""The embedded Kafka broker of the local profile: real Apache Kafka, KRaft, one node.

It runs from the jars that ``jvm/pom.xml`` fetches from Maven Central (profile ``broker``), on
127.0.0.1 only, with its config, data, log and pid file under ``<state>/kafka``. Its classpath is
kept apart from Spark's, which needs an older ``kafka-clients``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from webtraffic import processes
from webtraffic.errors import WebtrafficError
from webtraffic.settings import Settings

BROKER_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
MIN_JAVA_MAJOR = 17


@dataclass
class BrokerStatus:
    """What ``webtraffic stack status`` reports about the broker."""

    state: str  # running | stopped | not-answering
    pid: int | None
    bootstrap_servers: str
    port: int
    controller_port: int
    log_file: str
    topics: dict[str, int] = field(default_factory=dict)  # topic -> partitions

    def to_dict(self) -> dict[str, object]:
        """Returns a JSON-ready dict."""
        return asdict(self)


def find_java() -> str:
    """Returns the ``java`` executable (``JAVA_HOME`` first, then ``PATH``).

    Raises:
        WebtrafficError: Java is missing or older than 17.
    """
    java_home = os.environ.get("JAVA_HOME")
    candidates = [str(Path(java_home) / "bin" / "java")] if java_home else []
    candidates.append(shutil.which("java") or "")
    java = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if java is None:
        raise WebtrafficError(
            "Java not found: install a Java 17+ runtime (e.g. apt-get install "
            "openjdk-17-jre-headless) or set JAVA_HOME"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8.0_x" style
            major = int(match.group(2))
        if major < MIN_JAVA_MAJOR:
            raise WebtrafficError(f"{java} is Java {major}; Java {MIN_JAVA_MAJOR}+ is required")
    return java


def new_cluster_id() -> str:
    """Returns a Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class LocalKafkaBroker:
    """Formats, starts, checks and stops the single-node KRaft broker of the local profile.

    Args:
        settings: The project settings; ``settings.kafka`` gives the ports and the topic.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.kafka_dir
        self.data_dir = self.home / "data"
        self.config_file = self.home / "server.properties"
        self.log4j_file = self.home / "log4j2.properties"
        self.log_file = self.home / "broker.log"
        self.pid_file = self.home / "broker.pid"

    @property
    def port(self) -> int:
        """The client (PLAINTEXT) port."""
        return self.settings.kafka.port

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        """The broker's pid if the broker this project started still runs."""
        return processes.read_pid(self.pid_file, BROKER_MAIN_CLASS)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> BrokerStatus:
        """Starts the broker if it is not running, waits until it answers, creates the topics.

        Starting a running broker is harmless: it only makes sure the topics exist.

        Args:
            timeout: Seconds to wait for the broker to accept clients.

        Returns:
            The broker's status after start.

        Raises:
            WebtrafficError: Jars or Java missing, a port taken by another process, or the broker
                exited or did not answer in time (the message names its log file).
        """
        if self.pid() is None:
            self._check_jars()
            java = find_java()
            kafka = self.settings.kafka
            for name, port in (
                ("WEBTRAFFIC_KAFKA_PORT", kafka.port),
                ("WEBTRAFFIC_KAFKA_CONTROLLER_PORT", kafka.controller_port),
            ):
                if processes.port_in_use(port):
                    raise WebtrafficError(
                        f"port {port} on 127.0.0.1 is already in use by another process; "
                        f"stop it or choose another port with {name}=<port>"
                    )
            self._write_config()
            self._format_storage(java)
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            proc = processes.start_detached(
                [
                    java,
                    "-Xms256m",
                    "-Xmx768m",
                    "-XX:+UseG1GC",
                    "-Djava.awt.headless=true",
                    f"-Dlog4j2.configurationFile={self.log4j_file}",
                    "-cp",
                    f"{self.settings.broker_jars_dir}/*",
                    BROKER_MAIN_CLASS,
                    str(self.config_file),
                ],
                log_file=self.log_file,
                pid_file=self.pid_file,
            )
            ready = processes.wait_until(
                lambda: proc.poll() is not None or processes.port_answers(self.port), timeout
            )
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise WebtrafficError(
                    f"Kafka broker exited with code {proc.returncode} during start; "
                    f"see {self.log_file}"
                )
            if not ready:
                raise WebtrafficError(
                    f"Kafka broker did not accept connections on {self.bootstrap_servers} within "
                    f"{timeout:.0f} s; see {self.log_file}"
                )
        self.ensure_topics(timeout=timeout)
        return self.status()

    def stop(self, timeout: float = 60.0) -> bool:
        """Stops the broker by its pid (SIGTERM, then SIGKILL after ``timeout`` seconds).

        Returns:
            True if a running broker was stopped, False if none was running.
        """
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        processes.stop_pid(pid, timeout=timeout, cmdline_marker=BROKER_MAIN_CLASS)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> BrokerStatus:
        """Tells whether the broker runs, answers, and which topics it has."""
        pid = self.pid()
        topics: dict[str, int] = {}
        if pid is None:
            state = "stopped"
        elif not processes.port_answers(self.port):
            state = "not-answering"
        else:
            state = "running"
            try:
                topics = self.list_topics(timeout=10.0)
            except WebtrafficError:
                state = "not-answering"
        kafka = self.settings.kafka
        return BrokerStatus(
            state=state,
            pid=pid,
            bootstrap_servers=self.bootstrap_servers,
            port=kafka.port,
            controller_port=kafka.controller_port,
            log_file=str(self.log_file),
            topics=topics,
        )

    # --- topics ----------------------------------------------------------------------------

    def _admin(self) -> object:
        from confluent_kafka.admin import AdminClient  # heavy import, only when needed

        return AdminClient({"bootstrap.servers": self.bootstrap_servers})

    def list_topics(self, timeout: float = 10.0) -> dict[str, int]:
        """Returns the broker's non-internal topics with their partition counts."""
        from confluent_kafka import KafkaException

        try:
            metadata = self._admin().list_topics(timeout=timeout)  # type: ignore[attr-defined]
        except KafkaException as exc:
            raise WebtrafficError(
                f"Kafka at {self.bootstrap_servers} did not answer: {exc}"
            ) from exc
        return {
            name: len(topic.partitions)
            for name, topic in sorted(metadata.topics.items())
            if not name.startswith("__")
        }

    def ensure_topics(self, timeout: float = 60.0) -> list[str]:
        """Creates the project's topics that do not exist yet.

        Returns:
            The names of the topics created now.
        """
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic

        kafka = self.settings.kafka
        wanted = {kafka.topic: kafka.partitions}
        created: list[str] = []
        deadline = time.monotonic() + timeout
        # Keep the client referenced until the futures resolve: a collected client fails them.
        admin = self._admin()
        while True:
            existing = self.list_topics(timeout=max(1.0, deadline - time.monotonic()))
            missing = [name for name in wanted if name not in existing]
            if not missing:
                return created
            futures = admin.create_topics(  # type: ignore[attr-defined]
                [
                    NewTopic(name, num_partitions=wanted[name], replication_factor=1)
                    for name in missing
                ],
                operation_timeout=30,
            )
            retry = False
            for name, future in futures.items():
                try:
                    future.result()
                    created.append(name)
                except KafkaException as exc:
                    code = exc.args[0].code()
                    if code == KafkaError.TOPIC_ALREADY_EXISTS:
                        continue
                    # Right after start the controller may not have elected itself yet.
                    if time.monotonic() < deadline:
                        retry = True
                        continue
                    raise WebtrafficError(f"could not create topic {name}: {exc}") from exc
            if not retry:
                return created
            time.sleep(0.5)

    # --- files -----------------------------------------------------------------------------

    def _check_jars(self) -> None:
        jars = self.settings.broker_jars_dir
        if not any(jars.glob("kafka_2.13-*.jar")):
            raise WebtrafficError(
                f"Kafka broker jars not found in {jars}; run `make setup` (it needs Maven) first"
            )

    def _write_config(self) -> None:
        kafka = self.settings.kafka
        self.home.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "\n".join(
                [
                    "# Written by webtraffic (kafka_broker.py) at every start; edit the code.",
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{kafka.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{kafka.port},"
                    f"CONTROLLER://127.0.0.1:{kafka.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{kafka.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.data_dir}",
                    "num.partitions=1",
                    "num.network.threads=2",
                    "num.io.threads=4",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    # Finite retention, as in production: bronze is the durable replay log.
                    "log.retention.hours=168",
                    "log.segment.bytes=268435456",
                    "message.max.bytes=4194304",
                    "",
                ]
            )
        )
        self.log4j_file.write_text(
            "\n".join(
                [
                    "status = warn",
                    "appender.console.type = Console",
                    "appender.console.name = STDOUT",
                    "appender.console.layout.type = PatternLayout",
                    "appender.console.layout.pattern = [%d] %p %m (%c)%n",
                    "rootLogger.level = INFO",
                    "rootLogger.appenderRef.stdout.ref = STDOUT",
                    "logger.kafka.name = kafka",
                    "logger.kafka.level = WARN",
                    "logger.apache.name = org.apache.kafka",
                    "logger.apache.level = WARN",
                    "logger.state.name = state.change.logger",
                    "logger.state.level = WARN",
                    "logger.server.name = kafka.server.KafkaRaftServer",
                    "logger.server.level = INFO",
                    "",
                ]
            )
        )

    def _format_storage(self, java: str) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        result = subprocess.run(
            [
                java,
                f"-Dlog4j2.configurationFile={self.log4j_file}",
                "-cp",
                f"{self.settings.broker_jars_dir}/*",
                STORAGE_TOOL_CLASS,
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(self.config_file),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        with self.log_file.open("a") as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise WebtrafficError(
                f"formatting the Kafka storage in {self.data_dir} failed (exit "
                f"{result.returncode}); see {self.log_file}"
            )
