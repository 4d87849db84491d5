"""Apicurio Registry, speaking Confluent's Schema Registry API, run from Maven Central.

Confluent's own registry is not on Maven Central and karapace is not on PyPI, but Apicurio
publishes its finished Quarkus application as ``io.apicurio:apicurio-registry-app:<v>:
tar.gz:all``. It is unpacked once with ``maven-dependency-plugin:unpack`` into the same
cache as the Kafka jars and run with Java 17 (2.6.x; 3.x needs Java 21). The Confluent API
is served under ``/apis/ccompat/v7``; storage is in-memory H2 unless asked to persist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from streamer.dev.devstack.kafka import DEPENDENCY_PLUGIN_VERSION
from streamer.dev.devstack.processes import (
    ServiceError,
    cache_root,
    free_port,
    java_binary,
    spawn,
    stop_process,
)

APICURIO_VERSION = os.environ.get("STREAMER_DEV_APICURIO_VERSION", "2.6.13.Final")
CCOMPAT_PATH = "/apis/ccompat/v7"

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.streamer</groupId>
  <artifactId>apicurio-registry-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
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


def artifact(version: str = APICURIO_VERSION) -> str:
    """Maven coordinates of the finished application (classifier ``all``, a tar.gz)."""
    return f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"


def find_runner(app_dir: Path) -> Path:
    """The runnable jar inside an unpacked release: 2.x ships ``*-runner.jar``, 3.x
    ``quarkus-app/quarkus-run.jar``."""
    for pattern in ("**/quarkus-run.jar", "**/*-runner.jar"):
        found = sorted(app_dir.glob(pattern))
        if found:
            return found[0]
    raise ServiceError(f"no runnable jar in {app_dir}; remove it to fetch Apicurio again")


def ensure_app(version: str = APICURIO_VERSION) -> Path:
    """Return the registry's runnable jar, fetching and unpacking it on first use."""
    target = cache_root() / f"apicurio-registry-{version}"
    app = target / "app"
    if (target / ".complete").exists():
        return find_runner(app)
    if shutil.which("mvn") is None:
        raise ServiceError(
            "Maven (mvn) is needed to fetch Apicurio Registry: apt-get install maven"
        )
    target.mkdir(parents=True, exist_ok=True)
    pom = target / "pom.xml"
    pom.write_text(_POM.format(plugin=DEPENDENCY_PLUGIN_VERSION))
    staging = target / "app.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(pom),
        f"org.apache.maven.plugins:maven-dependency-plugin:{DEPENDENCY_PLUGIN_VERSION}:unpack",
        f"-Dartifact={artifact(version)}",
        f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"fetching Apicurio Registry {version} failed:\n{result.stdout[-3000:]}")
    find_runner(staging)
    shutil.rmtree(app, ignore_errors=True)
    staging.rename(app)
    (target / ".complete").write_text(version)
    return find_runner(app)


def jvm_options(
    port: int, management_port: int, *, data_dir: Path | None = None, heap: str = "384m"
) -> list[str]:
    """Loopback-only HTTP and management ports (the latter defaults to 0.0.0.0:9000, which
    collides between parallel runs), and a small heap. C1 only (``TieredStopAtLevel=1``):
    on 2 busy cores it starts in about half the time, and a test registry never runs long
    enough to profit from C2. With ``data_dir`` the H2 database is a file there instead of
    memory, so schemas and their ids survive a restart (as with a real deployment's
    database); ``REGISTRY_DATASOURCE_URL`` is the name Apicurio's own config reads."""
    storage = [f"-DREGISTRY_DATASOURCE_URL=jdbc:h2:file:{data_dir}/registry"] if data_dir else []
    return [
        f"-Xmx{heap}",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        "-Dquarkus.http.host=127.0.0.1",
        f"-Dquarkus.http.port={port}",
        "-Dquarkus.management.host=127.0.0.1",
        f"-Dquarkus.management.port={management_port}",
        *storage,
    ]


@dataclass
class SchemaRegistry:
    """An Apicurio Registry process; ``start`` blocks until the Confluent API answers.

    ``persistent`` keeps its database in ``workdir`` so a stop and start is a restart of the
    same registry, not a new empty one.
    """

    workdir: Path
    die_with_parent: bool = True
    persistent: bool = False
    port: int = 0
    pid: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The Confluent-compatible base URL that ``SchemaRegistryClient`` takes."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "schema-registry.log"

    def start(self, timeout: float = 120.0) -> None:
        """Start on a free port, or on the previous one after ``stop`` (a restart keeps
        the URL that clients hold)."""
        runner = ensure_app()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        data_dir = self.workdir / "data" if self.persistent else None
        options = jvm_options(self.port, free_port(), data_dir=data_dir)
        cmd = [java_binary(), *options, "-jar", str(runner)]
        self._proc = spawn(cmd, self.log_path, die_with_parent=self.die_with_parent)
        self.pid = self._proc.pid
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = f"{self.url}/subjects"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServiceError(f"schema registry exited early; see {self.log_path}")
            if http_status(probe) == 200:
                return
            time.sleep(0.2)
        raise ServiceError(f"schema registry not ready after {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, grace=10.0)
            self._proc = None


def http_status(url: str, timeout: float = 2.0) -> int:
    """The HTTP status of a GET, or 0 while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0
