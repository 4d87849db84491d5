"""The C TreeSHAP (``model.treeshap``) gives LightGBM's ``pred_contrib`` byte for byte, on
any input, whatever it remembered from the rows before; models it does not take are left
to LightGBM."""

from __future__ import annotations

from pathlib import Path

import lightgbm
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from streamer.model.explainer import ADDITIVE_ROWS, reference_rows
from streamer.model.lightgbm_lib import Booster
from streamer.model.metadata import ModelMetadata
from streamer.model.treeshap import FastContributions, available, fast_contributions, parse

VERSION = Path(__file__).resolve().parents[2] / "models" / "fraud-gbt" / "2"
TEXT = (VERSION / "explainer.txt").read_text()
BOOSTER = Booster(TEXT)
FAST = FastContributions(TEXT)  # one for every example: its memory carries over
WIDTH, TREES = parse(TEXT)
THRESHOLDS = sorted({float(np.float32(t)) for tree in TREES for t in tree["threshold"]})


def _near(value: float) -> list[float]:
    """A float32 threshold and its neighbours: both sides of ``<=``."""
    f = np.float32(value)
    return [float(np.nextafter(f, np.float32(-np.inf))), float(f), float(np.nextafter(f, np.inf))]


values = (
    st.floats(-1e7, 1e7, width=32)
    | st.sampled_from(THRESHOLDS).flatmap(lambda t: st.sampled_from(_near(t)))
    | st.sampled_from([0.0, -0.0, 1.0, 1e-36, -1e-36, float("nan"), float("inf"), -float("inf")])
)


def test_the_extension_is_built_here() -> None:
    assert available()


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(0, 24), st.just(WIDTH)), elements=values))
def test_contributions_are_lightgbms_bytes(matrix: npt.NDArray[np.float32]) -> None:
    got = FAST(matrix)
    assert got.shape == (len(matrix), WIDTH + 1)
    assert got.tobytes() == BOOSTER.contributions(matrix).tobytes()


def test_repeated_and_reordered_rows_are_lightgbms_bytes() -> None:
    """Rows served from memory (the same paths again, in another order) add up as
    LightGBM's do."""
    meta = ModelMetadata.model_validate_json((VERSION / "metadata.json").read_text())
    rows = reference_rows(meta, 64)
    rows = np.concatenate([rows, rows[::-1], rows[5:40]])
    fast = FastContributions(TEXT)
    assert fast(rows).tobytes() == BOOSTER.contributions(rows).tobytes()
    hits, _, kept = fast.stats()
    assert hits > 0
    assert kept > 0


@pytest.mark.parametrize("tables", [0, 1 << 20])
def test_a_memory_that_starts_over_all_the_time_gives_the_same_bytes(tables: int) -> None:
    """A memory of a few terms is emptied for nearly every leaf, within a row and a tree;
    without per-leaf tables every leaf is looked up in the hash."""
    meta = ModelMetadata.model_validate_json((VERSION / "metadata.json").read_text())
    rows = reference_rows(meta, 24)
    rows = np.concatenate([rows, rows[::-1]])
    fast = FastContributions(TEXT, memory=(40, tables))
    assert fast(rows).tobytes() == BOOSTER.contributions(rows).tobytes()


def _trained(
    data: npt.NDArray[np.float64], categorical: list[int] | None = None, **params: object
) -> str:
    rng = np.random.default_rng(3)
    label = (np.nan_to_num(data[:, 0]) + rng.normal(0, 0.5, len(data)) > 0.3).astype(int)
    settings = {"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 5, "verbose": -1}
    dataset = lightgbm.Dataset(data, label, categorical_feature=categorical or "auto")
    return str(lightgbm.train(settings | params, dataset, 12).model_to_string())


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_missing_values_go_where_lightgbm_sends_them(zero_as_missing: bool) -> None:
    """Trees with NaN or zero as missing, default left or right: the same bytes."""
    rng = np.random.default_rng(7)
    data = rng.normal(0, 1, (400, 4))
    data[rng.random(data.shape) < 0.2] = np.nan
    data[rng.random(data.shape) < 0.2] = 0.0
    text = _trained(data, zero_as_missing=zero_as_missing)
    _, trees = parse(text)
    missing = {(d >> 2) & 3 for tree in trees for d in tree["decision_type"]}
    assert missing == ({1} if zero_as_missing else {2})  # zero / NaN as missing
    rows = np.concatenate([data[:200], rng.normal(0, 2, (50, 4))]).astype(np.float32)
    fast = fast_contributions(text, Booster(text).contributions, rows[:ADDITIVE_ROWS])
    assert fast is not None
    assert fast(rows).tobytes() == Booster(text).contributions(rows).tobytes()


def test_a_categorical_model_is_left_to_lightgbm() -> None:
    rng = np.random.default_rng(11)
    data = np.column_stack([rng.integers(0, 6, 300), rng.normal(0, 1, 300)]).astype(float)
    text = _trained(data, [0], min_data_per_group=5, cat_smooth=1)
    assert "num_cat=0" not in text.split("end of trees")[0].split("Tree=1")[0]
    rows = data[:ADDITIVE_ROWS].astype(np.float32)
    assert fast_contributions(text, Booster(text).contributions, rows) is None


def test_a_model_that_disagrees_with_lightgbm_is_not_used() -> None:
    """The load check: contributions that differ in any byte from the reference's leave
    the explainer on LightGBM."""
    rows = reference_rows(
        ModelMetadata.model_validate_json((VERSION / "metadata.json").read_text()), 4
    )

    def off_by_one_bit(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        out = BOOSTER.contributions(matrix)
        out[0, 0] = np.nextafter(out[0, 0], np.inf)
        return out

    assert fast_contributions(TEXT, off_by_one_bit, rows) is None
    assert fast_contributions(TEXT, BOOSTER.contributions, rows) is not None
