"""Fixtures of the serve unit tests: the shipped model, loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.model.registry import LoadedModel, load_model

MODELS = Path(__file__).resolve().parents[3] / "models"


@pytest.fixture(scope="session")
def model() -> LoadedModel:
    return load_model("fraud-gbt", MODELS)
