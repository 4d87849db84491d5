"""Test harness: real Kafka and Redis (and, when a test asks, a real schema registry and
MLflow server) for integration tests, fresh names for every test.

Services come from ``streamer.dev.devstack.stack.acquire`` (environment addresses, a Docker
engine, or local processes), once per run, and are removed at the end, also after a
failure or Ctrl-C. A run with failures keeps the broker log in ``build/test-logs/``.
"""

from __future__ import annotations

import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import settings

from streamer.dev.devstack.stack import Endpoints, acquire, mlflow_server, schema_registry

# Property tests are judged by what they find, not by how fast an example runs: on a loaded
# 2-core CI machine a per-example deadline only makes them flaky.
settings.register_profile("streamer", deadline=None)
settings.load_profile("streamer")

LOG_DIR = Path(__file__).resolve().parent.parent / "build" / "test-logs"
_kept_logs: list[Path] = []


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (CI cancelling a job) unwinds like Ctrl-C, so fixtures stop the services.
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for path in _kept_logs:
        terminalreporter.write_line(f"service log kept for the failed run: {path}", yellow=True)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Endpoints]:
    """The real Kafka broker and Redis for this run. Never skipped: no service, no pass."""
    with acquire() as endpoints:
        yield endpoints
        if request.session.testsfailed and endpoints.kafka_log and endpoints.kafka_log.exists():
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            kept = LOG_DIR / "kafka-broker.log"
            shutil.copyfile(endpoints.kafka_log, kept)
            _kept_logs.append(kept)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Endpoints) -> str:
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap, "log_level": 0})


@pytest.fixture
def unique() -> str:
    """A short unique token for names owned by one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def make_topic(admin: AdminClient, unique: str) -> Iterator[Callable[..., str]]:
    """Create topics named after the test (with topic ``config`` if given); deleted afterwards."""
    created: list[str] = []

    def make(suffix: str = "in", partitions: int = 3, config: dict[str, str] | None = None) -> str:
        name = f"t-{unique}-{suffix}"
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        futures = admin.create_topics([topic])
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            future.exception(timeout=30)


@pytest.fixture
def group_id(unique: str) -> str:
    return f"g-{unique}"


@pytest.fixture(scope="session")
def redis_url(stack: Endpoints) -> str:
    return stack.redis_url


@pytest.fixture(scope="session")
def schema_registry_url() -> Iterator[str]:
    """A real Confluent-compatible registry (Apicurio), started on first request only."""
    with schema_registry() as url:
        yield url


@pytest.fixture(scope="session")
def mlflow_tracking_uri() -> Iterator[str]:
    """A real MLflow tracking server, started on first request only."""
    with mlflow_server() as uri:
        yield uri


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis, unique: str) -> Iterator[str]:
    """A key prefix owned by one test; its keys are deleted afterwards."""
    prefix = f"t-{unique}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        redis_client.delete(*keys)
