"""A single-node KRaft Apache Kafka broker run from Maven Central jars with Java 17.

The jars are fetched once with Maven (``maven-dependency-plugin:copy-dependencies``) into
a cache outside the repository and reused after. The broker is formatted with
``kafka.tools.StorageTool`` and started with ``kafka.Kafka`` on free loopback ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamer.dev.devstack.processes import (
    ServiceError,
    cache_root,
    free_port,
    java_binary,
    spawn,
    stop_process,
)

KAFKA_VERSION = os.environ.get("STREAMER_DEV_KAFKA_VERSION", "4.1.1")
SLF4J_VERSION = "2.0.17"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.streamer</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <!-- Pinned so Kafka's older slf4j-api 1.7 does not win nearest-wins resolution. -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>{slf4j}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{plugin}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Return a directory holding the broker's runtime classpath, fetching it on first use."""
    target = cache_root() / f"kafka-{version}"
    libs = target / "libs"
    marker = target / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise ServiceError("Maven (mvn) is needed to fetch the Kafka jars: apt-get install maven")
    target.mkdir(parents=True, exist_ok=True)
    pom = target / "pom.xml"
    pom.write_text(
        _POM.format(kafka=version, slf4j=SLF4J_VERSION, plugin=DEPENDENCY_PLUGIN_VERSION)
    )
    staging = target / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(pom),
        f"org.apache.maven.plugins:maven-dependency-plugin:{DEPENDENCY_PLUGIN_VERSION}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"fetching Kafka {version} jars failed:\n{result.stdout[-3000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(version)
    return libs


def server_properties(data_dir: Path, port: int, controller_port: int) -> dict[str, str]:
    """Broker settings fit for tests: one node, replication factors 1, no rebalance delay."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "log.flush.interval.messages": "9223372036854775807",
        "log.retention.hours": "1",
    }


@dataclass
class KafkaBroker:
    """A broker process; ``start`` blocks until an admin metadata request succeeds."""

    workdir: Path
    heap: str = "512m"
    die_with_parent: bool = True
    port: int = 0
    pid: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    def start(self, timeout: float = 90.0) -> None:
        libs = ensure_jars()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port, controller = free_port(), free_port()
        props = server_properties(self.workdir / "data", self.port, controller)
        conf = self.workdir / "server.properties"
        conf.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        java = [java_binary(), "-cp", f"{libs}/*"]
        cluster_id = (
            subprocess.run(
                [*java, "kafka.tools.StorageTool", "random-uuid"],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        fmt = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise ServiceError(f"kafka storage format failed: {fmt.stdout}{fmt.stderr}")
        jvm = [
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients=warn",
            "-Dorg.slf4j.simpleLogger.log.kafka.log=warn",
            "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.storage=warn",
        ]
        cmd = [java_binary(), *jvm, "-cp", f"{libs}/*", "kafka.Kafka", str(conf)]
        self._proc = spawn(cmd, self.log_path, die_with_parent=self.die_with_parent)
        self.pid = self._proc.pid
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        last_error = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServiceError(f"Kafka broker exited early; see {self.log_path}")
            try:
                meta = admin.list_topics(timeout=2)
                if meta.brokers:
                    return
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                last_error = str(exc)
            time.sleep(0.2)
        raise ServiceError(
            f"Kafka broker not ready after {timeout:.0f}s ({last_error}); see {self.log_path}"
        )

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, grace=15.0)
            self._proc = None


def new_workdir(prefix: str = "streamer-kafka-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
