from __future__ import annotations

from typing import Any

import pytest

from tests.unit.fakes import make_builder


@pytest.fixture
def build() -> Any:
    """A factory of pipelines on in-memory consumer/producer/Redis and the real model."""
    return make_builder()
