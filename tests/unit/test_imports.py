"""``imports.without``: a module looks missing within the block, and only there."""

from __future__ import annotations

import importlib
import sys

import pytest

from streamer.imports import without


def test_a_module_not_imported_yet_is_missing_within_the_block_only() -> None:
    name = "colorsys"  # small, stdlib, imported by nothing here
    sys.modules.pop(name, None)
    with without(name), pytest.raises(ImportError):
        importlib.import_module(name)
    assert name not in sys.modules
    assert importlib.import_module(name).rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)


def test_a_module_imported_already_is_left_as_it_is() -> None:
    import json

    with without("json"):
        assert importlib.import_module("json") is json
    assert sys.modules["json"] is json
