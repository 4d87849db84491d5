"""Where Kafka, Redis, the schema registry and MLflow come from, for tests and ``make dev-up``.

In this order:

1. addresses in ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` (a cluster you run);
2. a Docker engine that answers (testcontainers);
3. local processes: a KRaft broker from Maven Central jars and Debian's ``redis-server``.

The schema registry and MLflow are started only when asked for (``schema_registry`` and
``mlflow_server``), from ``STREAMER_TEST_SCHEMA_REGISTRY_URL`` / ``MLFLOW_TRACKING_URI`` when
set, else as local processes: most test runs need neither, and each costs 10 to 25 s.

Everything this module starts is stopped, and its files removed, when the context exits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streamer.dev.devstack.kafka import KafkaBroker
from streamer.dev.devstack.mlflow import MlflowServer
from streamer.dev.devstack.redis import RedisServer
from streamer.dev.devstack.schema_registry import SchemaRegistry

Source = Literal["env", "docker", "local"]


@dataclass
class Endpoints:
    """Addresses of a running stack, and how to reach the pieces this process controls."""

    kafka_bootstrap: str
    redis_url: str
    source: Source
    kafka_log: Path | None = None
    redis_server: RedisServer | None = None
    workdir: Path | None = None


def docker_available() -> bool:
    """True when a Docker engine answers a ping within two seconds."""
    try:
        import docker  # type: ignore[import-untyped]  # installed with testcontainers

        client = docker.from_env(timeout=2)
        client.ping()
        client.close()
    except Exception:  # noqa: BLE001 - no client, no socket, no engine: all mean "no"
        return False
    return True


@contextmanager
def local_stack(*, die_with_parent: bool = True) -> Iterator[Endpoints]:
    """Start a broker and a redis-server as local processes; stop and remove them on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="streamer-stack-"))
    broker = KafkaBroker(workdir / "kafka", die_with_parent=die_with_parent)
    redis = RedisServer(workdir / "redis", die_with_parent=die_with_parent)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        stack.callback(broker.stop)
        stack.callback(redis.stop)
        redis.start()
        broker.start()
        yield Endpoints(
            kafka_bootstrap=broker.bootstrap,
            redis_url=redis.url,
            source="local",
            kafka_log=broker.log_path,
            redis_server=redis,
            workdir=workdir,
        )


@contextmanager
def docker_stack() -> Iterator[Endpoints]:  # pragma: no cover - no Docker engine on CI here
    """Start Kafka (KRaft) and Redis containers with testcontainers."""
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    with (
        KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft() as kafka,
        RedisContainer("redis:7-alpine") as redis,
    ):
        host = redis.get_container_host_ip()
        port = redis.get_exposed_port(6379)
        yield Endpoints(
            kafka_bootstrap=kafka.get_bootstrap_server(),
            redis_url=f"redis://{host}:{port}/0",
            source="docker",
        )


@contextmanager
def acquire() -> Iterator[Endpoints]:
    """The stack for this run, from the first source that provides one."""
    kafka_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    redis_env = os.environ.get("REDIS_URL")
    if kafka_env and redis_env:
        yield Endpoints(kafka_bootstrap=kafka_env, redis_url=redis_env, source="env")
        return
    if kafka_env or redis_env:
        missing = "REDIS_URL" if kafka_env else "KAFKA_BOOTSTRAP_SERVERS"
        raise RuntimeError(
            f"set both KAFKA_BOOTSTRAP_SERVERS and REDIS_URL, or neither ({missing} is unset)"
        )
    if os.environ.get("STREAMER_DEV_NO_DOCKER") != "1" and docker_available():
        with docker_stack() as endpoints:
            yield endpoints
        return
    with local_stack() as endpoints:
        yield endpoints


@contextmanager
def schema_registry() -> Iterator[str]:
    """The Confluent-compatible registry URL: ``STREAMER_TEST_SCHEMA_REGISTRY_URL`` or a
    local Apicurio started now and stopped on exit."""
    if url := os.environ.get("STREAMER_TEST_SCHEMA_REGISTRY_URL"):
        yield url
        return
    workdir = Path(tempfile.mkdtemp(prefix="streamer-registry-"))
    registry = SchemaRegistry(workdir)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        stack.callback(registry.stop)
        registry.start()
        yield registry.url


@contextmanager
def mlflow_server() -> Iterator[str]:
    """The MLflow tracking URI: ``MLFLOW_TRACKING_URI`` or a local server started now (its
    virtualenv built on first use) and stopped, workers included, on exit."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        yield uri
        return
    workdir = Path(tempfile.mkdtemp(prefix="streamer-mlflow-"))
    server = MlflowServer(workdir)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        stack.callback(server.stop)
        server.start()
        yield server.tracking_uri
