"""Writing to MLflow: registering a version directory, and moving an alias with a reason.

``register`` logs a run (the training parameters, the held-out metrics, the ONNX
signature, streamer's metadata) and creates a NEW model version from its artifacts, so
nothing ever overwrites a released version: MLflow numbers versions itself. A version
directory is verified first (what a streamer would refuse is never registered), and an
exact duplicate (same ONNX sha256 and same metadata) of a version already registered is
refused unless ``force``: re-running CI on an unchanged commit must not mint versions.
The same ONNX with different metadata (new thresholds, references) is a new version.

``promote`` verifies the target version as a streamer would, then sets the alias and
records who moved it from where and why as tags of the version (MLflow keeps no alias
history of its own).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamer.errors import ModelError
from streamer.model import mlflow_registry as reg
from streamer.model.aliases import ALIAS
from streamer.model.registry import load_model

EXPERIMENT = "streamer-models"
SHA_TAG = reg.SHA_TAG
META_TAG = "streamer.metadata_sha256"


@dataclass(frozen=True)
class Registered:
    """What ``register`` did: the new version, or the existing duplicate it refused to copy."""

    name: str
    version: str
    sha256: str
    run_id: str


def _signature(meta: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": meta.input_name, "type": "float32", "shape": list(meta.input_shape)}],
        "outputs": list(meta.output_names),
        "probability_output": meta.probability_output,
        "feature_names": list(meta.feature_names),
    }


def _params(training: dict[str, Any]) -> dict[str, str]:
    flat = {k: v for k, v in training.items() if not isinstance(v, dict)}
    flat.update({f"param.{k}": v for k, v in training.get("params", {}).items()})
    return {k: str(v)[:500] for k, v in flat.items()}


def _duplicate(mlflow: Any, name: str, sha: str, meta_sha: str) -> str | None:
    for found in mlflow.search_model_versions(f"name='{name}'"):
        tags = found.tags or {}
        if tags.get(SHA_TAG) == sha and tags.get(META_TAG) == meta_sha:
            return str(found.version)
    return None


def register(directory: Path, *, name: str | None = None, force: bool = False) -> Registered:
    """Log ``directory`` (a version folder of the file registry) as a new MLflow version."""
    model = load_model(str(directory), directory.parent.parent)  # verified, or ModelError
    meta = model.metadata
    name = name or meta.name
    meta_bytes = model.path.with_name("metadata.json").read_bytes()
    meta_sha = hashlib.sha256(meta_bytes).hexdigest()
    mlflow = reg.client()
    try:
        return _register(mlflow, model.path.parent, name, meta, meta_sha, force)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise reg.translate(f"registering {directory} as {name}", exc) from None


def _register(
    mlflow: Any, folder: Path, name: str, meta: Any, meta_sha: str, force: bool
) -> Registered:
    from mlflow.exceptions import MlflowException

    try:
        mlflow.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    existing = _duplicate(mlflow, name, meta.sha256, meta_sha)
    if existing is not None and not force:
        raise ModelError(
            f"{folder} is already registered as {reg.PREFIX}{name}/{existing} (same ONNX "
            "sha256 and metadata); promote that version, or pass --force for a copy"
        )
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(EXPERIMENT)
    tags = {SHA_TAG: meta.sha256, META_TAG: meta_sha, "streamer.source": str(folder)}
    run = mlflow.create_run(experiment_id, tags=tags, run_name=f"{name}-{meta.version}")
    run_id = run.info.run_id
    for key, value in _params(meta.training).items():
        mlflow.log_param(run_id, key, value)
    for key, value in meta.metrics.items():
        mlflow.log_metric(run_id, key, float(value))
    mlflow.log_dict(run_id, _signature(meta), f"{reg.ARTIFACT_DIR}/signature.json")
    mlflow.log_artifact(run_id, str(folder / "model.onnx"), reg.ARTIFACT_DIR)
    mlflow.log_artifact(run_id, str(folder / "metadata.json"), reg.ARTIFACT_DIR)
    if meta.explainer is not None:  # travels with the version; its sha256 is in the metadata
        mlflow.log_artifact(run_id, str(folder / meta.explainer.file), reg.ARTIFACT_DIR)
    mlflow.set_terminated(run_id)
    version = mlflow.create_model_version(
        name,
        f"{run.info.artifact_uri}/{reg.ARTIFACT_DIR}",
        run_id=run_id,
        tags=tags,
        description=f"{meta.framework}; held-out {_summary(meta.metrics)}",
    )
    return Registered(name, str(version.version), meta.sha256, run_id)


def _summary(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {metrics[k]:.4f}" for k in ("roc_auc", "pr_auc") if k in metrics)


def promote(
    spec: str,
    *,
    alias: str,
    reason: str = "",
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[str | None, str]:
    """Point ``alias`` at the version ``spec`` names (verified first); (from, to) versions."""
    if not ALIAS.fullmatch(alias):
        raise ModelError(f"alias {alias!r}: start with a letter; letters, digits, _ and - only")
    if "\n" in reason:
        raise ModelError("the reason must be one line")
    model = reg.load(spec)  # verified, or ModelError: the alias stays where it is
    name, version = model.metadata.name, model.metadata.version
    mlflow = reg.client()
    try:
        before: str | None = reg.resolve_version(f"{reg.PREFIX}{name}@{alias}", mlflow)
    except ModelError:
        before = None
    if before == version:
        return before, version
    record = {"at": now().isoformat(), "from": before, "reason": reason}
    try:
        mlflow.set_registered_model_alias(name, alias, version)
        mlflow.set_model_version_tag(name, version, f"streamer.alias.{alias}", json.dumps(record))
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise reg.translate(f"moving {name}@{alias}", exc) from None
    return before, version
