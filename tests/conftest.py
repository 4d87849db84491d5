"""Test harness: real Kafka and Redis (and, when a test asks, a real schema registry and
MLflow server) for integration tests, fresh names for every test.

Services come from ``streamer.dev.devstack.stack`` (environment addresses, a Docker engine,
or local processes), once per run, or once per pytest-xdist worker (``make test`` runs
``-n 2 --dist loadgroup``), and are removed at the end, also after a failure or Ctrl-C. A
run with failures keeps the broker log in ``build/test-logs/``.

Start-up is most of an integration run's fixed cost, so it is hidden behind work: as soon
as a worker knows which servers its tests need, each starts in a thread of its own
(``tests/services.py``), side by side, and until they are up the worker is given tests that
need none (``tests/xdist_scheduling.py``). The tests of the registry and of MLflow (30 to
50 s to start) form one xdist group per server, run by the one worker that starts it.
Tests share a worker's servers and own their names (topics, group, key prefix: ``unique``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import settings

from streamer.dev.devstack.stack import Endpoints, acquire, mlflow_server, schema_registry
from tests.services import Background

# Property tests are judged by what they find, not by how fast an example runs: on a loaded
# 2-core CI machine a per-example deadline only makes them flaky.
settings.register_profile("streamer", deadline=None)
settings.load_profile("streamer")


class _SnapshotLoggerDict(dict[str, Any]):
    """pytest's log capture walks every logger (``loggerDict.values()``) as each test phase
    starts, while a server starting in a background thread may import a module that adds
    one: "RuntimeError: dictionary changed size during iteration" (an INTERNALERROR that
    ends the worker). The walk gets a snapshot; ``list()`` of a dict is one C call, which
    no other thread interrupts."""

    def values(self) -> list[Any]:  # type: ignore[override]
        return list(super().values())


logging.Logger.manager.loggerDict = _SnapshotLoggerDict(logging.Logger.manager.loggerDict)

LOG_DIR = Path(__file__).resolve().parent.parent / "build" / "test-logs"

SERVER_GROUPS = {"mlflow_tracking_uri": "mlflow", "schema_registry_url": "registry"}
"""Fixture of a slow-starting server -> the xdist group of the tests that use it."""
SHARED_GROUPS = {"cluster": "redis-cluster"}
"""Fixture of a session-scoped server its tests start themselves -> their xdist group, so
that one worker runs them all on one such server."""
_STARTERS: dict[str, Callable[[], AbstractContextManager[Any]]] = {
    "stack": acquire,
    "mlflow": mlflow_server,
    "registry": schema_registry,
}
_servers: dict[str, Background[Any]] = {}
# Set by the controller, inherited by xdist workers; not STREAMER_*: streamer refuses
# variables of its prefix that are not settings.
_RUN_VARIABLE = "TEST_SERVERS_RUN"


def _server(name: str) -> Background[Any]:
    """The run's ``name`` server, starting it now unless it already is."""
    if name not in _servers:
        ready = ready_file(_worker()[0], name)
        _servers[name] = Background(name, _STARTERS[name], ready)
    return _servers[name]


def ready_file(worker: str, name: str) -> Path:
    """The file ``worker``'s ``name`` server touches once it is up (``xdist_scheduling``)."""
    return Path(tempfile.gettempdir()) / f"streamer-tests-{_run()}" / f"{worker}-{name}.ready"


def _run() -> str:
    """This run's id: the controller's, shared with its xdist workers."""
    return os.environ.get(_RUN_VARIABLE, "single")


def _worker() -> tuple[str, int]:
    """This process's xdist worker id and the number of workers (``master``, 1 without)."""
    return (
        os.environ.get("PYTEST_XDIST_WORKER", "master"),
        int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")),
    )


def groups_of_worker(worker: str, count: int) -> set[str]:
    """The server groups that ``worker`` of ``count`` runs (and so starts the server of):
    round robin in ``SERVER_GROUPS`` order, everything when there is one."""
    index = int(worker[2:]) if worker.startswith("gw") else 0
    return {g for i, g in enumerate(SERVER_GROUPS.values()) if i % max(count, 1) == index}


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (CI cancelling a job) unwinds like Ctrl-C, so the services are stopped.
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    if not config.pluginmanager.hasplugin("xdist"):
        return
    from tests.xdist_scheduling import ServerGroupHooks, StructuredGroupIds

    if "PYTEST_XDIST_WORKER" in os.environ:
        config.pluginmanager.register(StructuredGroupIds(), "structured-group-ids")
    else:
        os.environ[_RUN_VARIABLE] = uuid.uuid4().hex
        hooks = ServerGroupHooks(groups_of_worker, ready_file)
        config.pluginmanager.register(hooks, "server-groups")


def pytest_unconfigure(config: pytest.Config) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ:
        shutil.rmtree(ready_file("-", "-").parent, ignore_errors=True)


def _fixtures(item: pytest.Item) -> list[str]:
    """Every fixture ``item`` uses, directly or through others."""
    names: list[str] = getattr(item, "fixturenames", [])
    return names


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in item.path.as_posix():
            item.add_marker(pytest.mark.integration)
        for fixture, group in (SERVER_GROUPS | SHARED_GROUPS).items():
            if fixture in _fixtures(item):
                item.add_marker(pytest.mark.xdist_group(group))
                break


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start what the selected tests will need on this worker, now, in the background."""
    if session.config.option.collectonly:
        return
    fixtures = set().union(*map(_fixtures, session.items))
    if "stack" in fixtures:
        _server("stack")
    worker, count = _worker()
    grouped = worker == "master" or bool(getattr(session.config.option, "loadgroup", False))
    mine = groups_of_worker(worker, count) if grouped else set()
    for fixture, group in SERVER_GROUPS.items():
        if fixture in fixtures and group in mine:
            _server(group)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop every server this process started, side by side; keep the broker's log of a
    run with failures."""
    stack = _servers.get("stack")
    if session.testsfailed and stack is not None and stack.started:
        endpoints: Endpoints = stack.get()
        if endpoints.kafka_log and endpoints.kafka_log.exists():
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            kept = LOG_DIR / f"kafka-broker-{_run()}-{_worker()[0]}.log"
            shutil.copyfile(endpoints.kafka_log, kept)
    for server in _servers.values():
        server.request_stop()
    errors = []
    for name in list(_servers):
        try:
            _servers.pop(name).close()
        except Exception as exc:  # noqa: BLE001 - every server is stopped; errors reported
            errors.append(f"{name}: {exc!r}")
    if errors:  # every server was asked to stop; the run fails, saying which did not
        print(f"stopping the test servers failed: {errors}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the logs kept by this run (by this process or its xdist workers)."""
    for path in sorted(LOG_DIR.glob(f"kafka-broker-{_run()}-*.log")):
        terminalreporter.write_line(f"service log kept for the failed run: {path}", yellow=True)


@pytest.fixture(scope="session")
def stack() -> Endpoints:
    """The real Kafka broker and Redis for this run. Never skipped: no service, no pass."""
    endpoints: Endpoints = _server("stack").get()
    return endpoints


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
def schema_registry_url() -> str:
    """A real Confluent-compatible registry (Apicurio), started for the tests that ask."""
    url: str = _server("registry").get()
    return url


@pytest.fixture(scope="session")
def mlflow_tracking_uri() -> str:
    """A real MLflow tracking server, started for the tests that ask."""
    uri: str = _server("mlflow").get()
    return uri


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
