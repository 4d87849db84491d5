"""Fixtures shared by integration tests (the services come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from streamer.dev.devstack.redis import RedisServer
from streamer.dev.devstack.redis_cluster import RedisClusterGroup


@pytest.fixture
def topics(make_topic: Callable[..., str]) -> dict[str, str]:
    """Input (3 partitions), output (3) and dead-letter (1) topics, as streamer settings."""
    return {
        "input_topic": make_topic("in", partitions=3),
        "output_topic": make_topic("out", partitions=3),
        "dlq_topic": make_topic("in.dlq", partitions=1),
    }


@pytest.fixture
def run_settings(
    kafka_bootstrap: str, redis_url: str, redis_prefix: str, group_id: str, topics: dict[str, str]
) -> dict[str, str]:
    """``streamer run`` settings owned by this test: its topics, group and key prefix."""
    return {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "redis_url": redis_url,
        "redis_key_prefix": redis_prefix,
        "group_id": group_id,
        "input_format": "single-object",
        "output_format": "single-object",
        "metrics_port": "0",
        **topics,
    }


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterGroup]:
    """A 3-primary, 3-replica Redis Cluster on loopback, one per session: its tests form
    one xdist group (``tests/conftest.py``), so one worker starts it. Tests own their key
    prefixes; a test that kills a node leaves the cluster to its replica's promotion."""
    group = RedisClusterGroup(tmp_path_factory.mktemp("cluster"))
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, for tests that stop, restart or secure it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@dataclass(frozen=True)
class Bed:
    """What one integration test owns on the real services, as one fixture.

    ``kafka`` and ``redis_url`` are the shared broker and Redis; ``topics`` (input, output
    and dead-letter, as settings), ``group`` and ``prefix`` (its Redis key prefix) are this
    test's own; ``settings`` are ``streamer run`` settings for all of it; ``tmp`` its folder.
    """

    kafka: str
    redis_url: str
    redis: redis.Redis
    prefix: str
    group: str
    topics: dict[str, str]
    settings: dict[str, str]
    make_topic: Callable[..., str]
    tmp: Path


@pytest.fixture
def bed(
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    redis_prefix: str,
    group_id: str,
    topics: dict[str, str],
    run_settings: dict[str, str],
    make_topic: Callable[..., str],
    tmp_path: Path,
) -> Bed:
    return Bed(
        kafka_bootstrap,
        redis_url,
        redis_client,
        redis_prefix,
        group_id,
        topics,
        run_settings,
        make_topic,
        tmp_path,
    )
