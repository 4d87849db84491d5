"""The registry resolves specs, loads the committed model, and refuses tampered copies."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer import features
from streamer.errors import ModelError
from streamer.model.registry import list_models, load_model, resolve, version_key

MODELS = Path(__file__).parents[2] / "models"
COMMITTED = MODELS / "fraud-gbt" / "1"


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A registry with copies of the committed model as versions 1, 2 and 10."""
    for version in ("1", "2", "10"):
        target = tmp_path / "fraud-gbt" / version
        shutil.copytree(COMMITTED, target)
        meta = json.loads((target / "metadata.json").read_text())
        meta["version"] = version
        (target / "metadata.json").write_text(json.dumps(meta))
    return tmp_path


def edit_metadata(version_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = version_dir / "metadata.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_committed_model_loads_and_matches_the_feature_layout() -> None:
    model = load_model("fraud-gbt@1", MODELS)
    meta = model.metadata
    assert (meta.name, meta.version) == ("fraud-gbt", "1")
    assert features.unknown_features(meta.feature_names) == []
    assert meta.input_shape == (None, len(meta.feature_names))
    assert 0 < meta.thresholds.review <= meta.thresholds.decline < 1
    assert 0.85 < meta.metrics["roc_auc"] < 0.99
    assert sum(meta.reference_scores.counts) == meta.metrics["holdout_events"]
    np.testing.assert_array_equal(model.card_defaults, features.CARD_DEFAULTS)
    np.testing.assert_array_equal(model.merchant_defaults, features.MERCHANT_DEFAULTS)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("fraud-gbt", "10"), ("fraud-gbt@2", "2"), ("fraud-gbt@10", "10")],
)
def test_resolve_by_name(registry: Path, spec: str, expected: str) -> None:
    assert resolve(spec, registry) == registry / "fraud-gbt" / expected / "model.onnx"


def test_resolve_by_path(registry: Path) -> None:
    onnx = registry / "fraud-gbt" / "2" / "model.onnx"
    assert resolve(str(onnx), Path("/nonexistent")) == onnx
    assert resolve(str(onnx.parent), Path("/nonexistent")) == onnx


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("other-model", "no model 'other-model'"),
        ("fraud-gbt@7", "versions: 1, 2, 10"),
        ("/no/such/model.onnx", "does not exist"),
        ("fraud gbt", "not a path, name or name@version"),
        ("fraud-gbt@..", "not a path, name or name@version"),
        ("fraud-gbt@../../etc", "does not exist"),
    ],
)
def test_resolve_failures_name_the_setting(registry: Path, spec: str, message: str) -> None:
    with pytest.raises(ModelError, match=message) as info:
        resolve(spec, registry)
    assert "STREAMER_MODEL" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("versions", "highest"),
    [(["1", "2", "10"], "10"), (["1.9", "1.10"], "1.10"), (["2", "1.5", "2.0"], "2.0")],
)
def test_version_key(versions: list[str], highest: str) -> None:
    assert max(versions, key=version_key) == highest


def test_refuses_tampered_model_file(registry: Path) -> None:
    onnx = registry / "fraud-gbt" / "1" / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256") as info:
        load_model("fraud-gbt@1", registry)
    assert "STREAMER_MODEL" in str(info.value)


def test_refuses_missing_metadata(registry: Path) -> None:
    (registry / "fraud-gbt" / "2" / "metadata.json").unlink()
    with pytest.raises(ModelError, match=r"metadata\.json is missing"):
        load_model("fraud-gbt@2", registry)


def test_refuses_invalid_metadata(registry: Path) -> None:
    edit_metadata(registry / "fraud-gbt" / "2", lambda m: m["thresholds"].update(review=0.9))
    with pytest.raises(ModelError, match=r"review 0\.9 is above decline"):
        load_model("fraud-gbt@2", registry)


def _rename_feature(meta: dict[str, Any]) -> None:
    meta["feature_names"][3] = "astrological_sign"


def _drop_feature(meta: dict[str, Any]) -> None:
    meta["feature_names"].pop()
    meta["input_shape"][1] -= 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_rename_feature, "cannot compute: astrological_sign"),
        (lambda m: m["feature_names"].pop(), "28 feature names but input width 29"),
        (_drop_feature, r"ONNX input shape \[None, 29\] does not take 28 features"),
        (lambda m: m.update(input_name="x"), "ONNX inputs \\['features'\\]"),
        (lambda m: m.update(output_names=["label", "probs"]), "ONNX outputs"),
        (lambda m: m.update(probability_output="label2"), "probability output 'label2'"),
        (lambda m: m["card_defaults"].update(shoe_size=42.0), "defaults name"),
    ],
    ids=["unknown-feature", "count-vs-width", "width-vs-onnx", "input-name", "outputs",
         "probability-output", "unknown-default"],
)  # fmt: skip
def test_refuses_metadata_that_does_not_match(
    registry: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit_metadata(registry / "fraud-gbt" / "1", change)
    with pytest.raises(ModelError, match=message) as info:
        load_model("fraud-gbt@1", registry)
    assert "STREAMER_MODEL" in str(info.value)


def test_refuses_a_file_that_is_not_onnx(registry: Path) -> None:
    import hashlib

    version_dir = registry / "fraud-gbt" / "1"
    junk = b"not an onnx model"
    (version_dir / "model.onnx").write_bytes(junk)
    edit_metadata(version_dir, lambda m: m.update(sha256=hashlib.sha256(junk).hexdigest()))
    with pytest.raises(ModelError, match="ONNX Runtime cannot load it"):
        load_model("fraud-gbt@1", registry)


def test_list_models_reports_broken_versions_without_failing(registry: Path) -> None:
    (registry / "fraud-gbt" / "2" / "metadata.json").write_text("{")
    entries = list_models(registry)
    assert [(e.name, e.version) for e in entries] == [
        ("fraud-gbt", "1"),
        ("fraud-gbt", "2"),
        ("fraud-gbt", "10"),
    ]
    assert entries[0].metadata is not None
    assert entries[1].metadata is None
    assert entries[1].problem is not None
    assert "invalid" in entries[1].problem
    assert list_models(registry / "missing") == []
