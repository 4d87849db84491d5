"""Fixtures of the deploy checks: the tools and the chart rendered once per session."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.deploy.tools import KEDA_ON, built_tool, render


@pytest.fixture(scope="session")
def helm() -> str:
    return built_tool("helm.sh")


@pytest.fixture(scope="session")
def actionlint() -> str:
    return built_tool("actionlint.sh")


@pytest.fixture(scope="session")
def default_docs(helm: str) -> list[dict[str, Any]]:
    return render(helm)


@pytest.fixture(scope="session")
def keda_docs(helm: str) -> list[dict[str, Any]]:
    return render(helm, *KEDA_ON)


@pytest.fixture(scope="session")
def hpa_docs(helm: str) -> list[dict[str, Any]]:
    return render(helm, "autoscaling.enabled=true")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("STREAMER_"):
            monkeypatch.delenv(name)
    return monkeypatch
