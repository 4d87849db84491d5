"""models/train.py's export decides exactly as LightGBM does, whatever the training data.

Inputs reach the model as float32. A LightGBM threshold is a float64 midpoint between two
training values; rounded to the nearest float32 by the ONNX converter it can land on the
upper value, and that value then takes the other branch. Dense inputs (logged features of
a labelled export) hit this; these data are built to hit it everywhere."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def train() -> ModuleType:
    path = REPO / "models" / "train.py"
    spec = importlib.util.spec_from_file_location("streamer_models_train", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def adjacent_float32_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every input a neighbour of another in float32: every split falls between two."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(0, 3000, size=(n, 3))
    ulp = float(np.spacing(np.float32(1.0)))
    x = (1.0 + steps * ulp).astype(np.float32)
    y = ((steps[:, 0] % 7 < 3) ^ (steps[:, 1] % 5 < 2)).astype(np.int8)
    return x, y


def test_the_export_agrees_with_lightgbm_on_adjacent_float32_inputs(train: ModuleType) -> None:
    x, y = adjacent_float32_data(12_000, seed=0)
    order = np.arange(len(x))
    args = train.parse_args(["--trees", "40"])
    _, _, scores, explainer = train.fit_and_export(
        args, "adjacent", x, y, order[:10_000], order[10_000:]
    )
    booster = lgb.Booster(model_str=explainer)
    expected = booster.predict(x[10_000:])
    # fit_and_export exits beyond 1e-5; the float32 thresholds make it float error only
    assert float(np.max(np.abs(scores - expected))) < 1e-6
    # the explainer (LightGBM's model text) is the exported trees: its splits are float32
    thresholds = [
        float(v)
        for line in explainer.splitlines()
        if line.startswith("threshold=")
        for v in line.split("=", 1)[1].split()
    ]
    assert thresholds
    assert all(float(np.float32(t)) == t for t in thresholds)


def test_unfloored_thresholds_would_disagree(train: ModuleType) -> None:
    """The data above do break a nearest-rounded export (the test above is not vacuous)."""
    import onnxmltools
    import onnxruntime as ort
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = adjacent_float32_data(12_000, seed=0)
    model = lgb.LGBMClassifier(n_estimators=40, verbose=-1).fit(x, y)
    onnx_model = onnxmltools.convert_lightgbm(
        model, initial_types=[("x", FloatTensorType([None, 3]))], zipmap=False, target_opset=15
    )
    session = ort.InferenceSession(
        onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    onnx_scores = session.run(None, {"x": x})[1][:, 1]
    assert float(np.max(np.abs(onnx_scores - model.predict_proba(x)[:, 1]))) > 1e-3


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-3e38, max_value=3e38))
def test_floor32_keeps_every_float32_decision(train: ModuleType, t: float) -> None:
    """For every float32 x: x <= t exactly when x <= floor32(t); checked on t's float32
    neighbours, the only inputs where the two could differ."""
    f = train._floor32(t)
    assert float(np.float32(f)) == f
    assert f <= t
    near = np.float32(t)
    below, above = np.nextafter(near, np.float32(-np.inf)), np.nextafter(near, np.float32(np.inf))
    for x in (below, near, above):
        assert (float(x) <= t) == (float(x) <= f)
