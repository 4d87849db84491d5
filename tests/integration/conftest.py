"""Fixtures shared by integration tests (the services come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamer.dev.devstack.redis import RedisServer


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


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, for tests that stop, restart or secure it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
