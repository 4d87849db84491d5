"""An explainer is used only when it is its ONNX model's: refused at load and at swap."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from streamer.errors import ModelError
from streamer.model.explainer import TOLERANCE, onnx_margin_and_score, reference_rows
from streamer.model.promotion import promote
from streamer.model.registry import list_models, load_model
from streamer.model.watcher import ModelWatcher, Ready, Refused

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """Versions 2 and 3 of the shipped model, champion at 2."""
    for version in ("2", "3"):
        shutil.copytree(MODELS / "fraud-gbt" / version, tmp_path / "fraud-gbt" / version)
    promote(tmp_path, "fraud-gbt@2", alias="champion", reason="baseline")
    return tmp_path


def _swap_in_explainer(version_dir: Path, text: bytes) -> None:
    """Replace the explainer and record its sha256: a file that passes the hash check."""
    (version_dir / "explainer.txt").write_bytes(text)
    meta_path = version_dir / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["explainer"]["sha256"] = hashlib.sha256(text).hexdigest()
    meta_path.write_text(json.dumps(meta))


def test_shipped_versions_carry_a_verified_explainer() -> None:
    for version in ("2", "3"):
        model = load_model(f"fraud-gbt@{version}", MODELS)
        assert model.explainer is not None
        rows = reference_rows(model.metadata)
        margin, _ = onnx_margin_and_score(model.onnx_bytes, model.metadata, rows)
        total = model.explainer.contributions(rows).sum(axis=1)
        assert np.max(np.abs(total - margin)) <= TOLERANCE


def test_a_tampered_explainer_is_refused_at_load(registry: Path) -> None:
    path = registry / "fraud-gbt" / "3" / "explainer.txt"
    path.write_bytes(path.read_bytes().replace(b"leaf_value=", b"leaf_value=1", 1))
    with pytest.raises(ModelError, match=r"sha256 of .*explainer\.txt"):
        load_model("fraud-gbt@3", registry)


def test_another_models_explainer_is_refused_at_load(registry: Path) -> None:
    other = (registry / "fraud-gbt" / "2" / "explainer.txt").read_bytes()
    _swap_in_explainer(registry / "fraud-gbt" / "3", other)
    with pytest.raises(ModelError, match=r"explainer disagrees with model\.onnx") as caught:
        load_model("fraud-gbt@3", registry)
    assert "\n" not in str(caught.value)
    (entry,) = [e for e in list_models(registry) if e.version == "3"]
    assert entry.problem is not None
    assert "disagrees" in entry.problem


def test_a_missing_or_unreadable_explainer_is_refused(registry: Path) -> None:
    _swap_in_explainer(registry / "fraud-gbt" / "3", b"not a LightGBM model\n")
    with pytest.raises(ModelError, match="LightGBM cannot read its explainer"):
        load_model("fraud-gbt@3", registry)
    (registry / "fraud-gbt" / "3" / "explainer.txt").unlink()
    with pytest.raises(ModelError, match=r"explainer\.txt is missing"):
        load_model("fraud-gbt@3", registry)


def test_a_mismatched_explainer_is_refused_at_swap_and_retried_once_fixed(registry: Path) -> None:
    watcher = ModelWatcher("fraud-gbt@champion", registry)
    own = (registry / "fraud-gbt" / "3" / "explainer.txt").read_bytes()
    other = (registry / "fraud-gbt" / "2" / "explainer.txt").read_bytes()
    _swap_in_explainer(registry / "fraud-gbt" / "3", other)
    aliases = registry / "fraud-gbt" / "aliases.json"
    raw = json.loads(aliases.read_text())
    raw["aliases"]["champion"] = "3"  # a hand edit: promote would have refused it
    aliases.write_text(json.dumps(raw))
    outcome = watcher.load_candidate()
    assert isinstance(outcome, Refused)
    assert outcome.version == "3"
    assert "disagrees" in outcome.reason
    assert watcher.current_version == "2"
    _swap_in_explainer(registry / "fraud-gbt" / "3", own)
    fixed = watcher.load_candidate()
    assert isinstance(fixed, Ready)
    assert fixed.version == "3"
    assert fixed.model.explainer is not None


def test_promotion_refuses_a_version_whose_explainer_disagrees(registry: Path) -> None:
    other = (registry / "fraud-gbt" / "2" / "explainer.txt").read_bytes()
    _swap_in_explainer(registry / "fraud-gbt" / "3", other)
    with pytest.raises(ModelError, match="disagrees"):
        promote(registry, "fraud-gbt@3", alias="champion", reason="would be wrong")
