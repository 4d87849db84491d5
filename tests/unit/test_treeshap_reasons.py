"""Reasons built on the C TreeSHAP's contributions are those built on LightGBM's: the same
codes in the same order, the same inputs and values; the contributions they carry differ
by rounding at most."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from streamer.model.explainer import reference_rows
from streamer.model.lightgbm_lib import Booster
from streamer.model.metadata import ModelMetadata
from streamer.model.treeshap import FastContributions
from streamer.scoring.reasons import ReasonBuilder

MODELS = Path(__file__).resolve().parents[2] / "models" / "fraud-gbt"


def _model(version: str) -> tuple[ModelMetadata, Booster, FastContributions]:
    text = (MODELS / version / "explainer.txt").read_text()
    meta = ModelMetadata.model_validate_json((MODELS / version / "metadata.json").read_text())
    return meta, Booster(text), FastContributions(text)


def _without_contribution(reasons: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    return [[{k: v for k, v in r.items() if k != "contribution"} for r in row] for row in reasons]


@pytest.mark.parametrize("version", ["2", "3"])
def test_the_reference_rows_get_lightgbms_reasons(version: str) -> None:
    meta, booster, fast = _model(version)
    rows = reference_rows(meta)
    builder = ReasonBuilder(meta.feature_names)
    ours, theirs = (
        builder.reasons(fast(rows), rows),
        builder.reasons(booster.contributions(rows), rows),
    )
    assert _without_contribution(ours) == _without_contribution(theirs)
    assert sum(map(len, ours)) > len(rows)  # reasons to compare on most rows
    got = [r["contribution"] for row in ours for r in row]
    expected = [r["contribution"] for row in theirs for r in row]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


META, BOOSTER, FAST = _model("2")
BUILDER = ReasonBuilder(META.feature_names)
values = st.floats(-1e4, 1e4, width=32) | st.sampled_from([0.0, 1.0, float("nan")])


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        np.float32, st.tuples(st.integers(1, 16), st.just(len(META.feature_names))), elements=values
    )
)
def test_a_reasons_rank_is_lightgbms_up_to_rounding(matrix: npt.NDArray[np.float32]) -> None:
    """Where two codes are within rounding of each other either order may come out; every
    code given holds, by LightGBM's sums, the place it is given at up to rounding."""
    ours = BUILDER.reasons(FAST(matrix), matrix)
    exact = BOOSTER.contributions(matrix)
    theirs = BUILDER.reasons(exact, matrix)
    slack = FAST.bound(matrix)[:, :-1].sum(axis=1) * 2
    codes = {code.code: k for k, code in enumerate(BUILDER.codes)}
    by_code = np.stack([exact[:, members].sum(axis=1) for members in BUILDER._members], axis=1)
    for i, (mine, lgbm) in enumerate(zip(ours, theirs, strict=True)):
        assert abs(len(mine) - len(lgbm)) <= 1
        for a, b in zip(mine, lgbm, strict=False):
            gap = by_code[i, codes[a["code"]]] - by_code[i, codes[b["code"]]]
            assert abs(gap) <= slack[i]
