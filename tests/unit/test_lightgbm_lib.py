"""The explainer's contributions and margins through LightGBM's C library are exactly
those of the ``lightgbm`` package's own ``predict(pred_contrib=True)`` and
``predict(raw_score=True)``, on any input."""

from __future__ import annotations

from pathlib import Path

import lightgbm
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from streamer.model.lightgbm_lib import Booster, LightGBMError

TEXT = (
    Path(__file__).resolve().parents[2] / "models" / "fraud-gbt" / "2" / "explainer.txt"
).read_text()
OURS = Booster(TEXT)
THEIRS = lightgbm.Booster(model_str=TEXT)
WIDTH = THEIRS.num_feature()

values = st.floats(-1e7, 1e7, width=32) | st.just(float("nan")) | st.sampled_from([0.0, 1.0])


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(0, 12), st.just(WIDTH)), elements=values))
def test_contributions_and_margins_are_lightgbms_own(matrix: npt.NDArray[np.float32]) -> None:
    ours, margins = OURS.contributions(matrix), OURS.margins(matrix)
    assert ours.shape == (len(matrix), WIDTH + 1)
    assert margins.shape == (len(matrix),)
    if len(matrix):
        theirs = THEIRS.predict(matrix, pred_contrib=True, num_threads=1)
        assert np.array_equal(ours, theirs)
        own = THEIRS.predict(matrix, raw_score=True, num_threads=1)
        assert np.array_equal(margins, own)


def test_a_text_that_is_no_model_is_refused_with_lightgbms_reason() -> None:
    with pytest.raises(LightGBMError, match=r"\S"):
        Booster("tree\nversion=v4\nnot a model\n")
