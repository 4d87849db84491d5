"""Fixtures shared by integration tests (the services come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def topics(make_topic: Callable[..., str]) -> dict[str, str]:
    """Input (3 partitions), output (3) and dead-letter (1) topics, as streamer settings."""
    return {
        "input_topic": make_topic("in", partitions=3),
        "output_topic": make_topic("out", partitions=3),
        "dlq_topic": make_topic("in.dlq", partitions=1),
    }
