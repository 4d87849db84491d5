"""The model registry's files: ``models/<name>/<version>/model.onnx`` + ``metadata.json``.

A model is used only when its file's sha256, its ONNX inputs and outputs, and its feature
names all match its metadata; anything else is a ``ModelError`` that says what to do.
Specs: a path, ``name`` (the highest version; versions sort naturally, "10" after "9"),
``name@version``, or ``name@alias`` (``champion``, ``challenger``: see ``aliases``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
from pydantic import ValidationError

from streamer.errors import ModelError
from streamer.features.engineering import unknown_features
from streamer.model.aliases import read_aliases
from streamer.model.explainer import open_explainer, verify
from streamer.model.integrity import check_sha256, model_error
from streamer.model.metadata import (
    NAME,
    LoadedModel,
    ModelMetadata,
    ReferenceHistogram,
    ScoreHistogram,
    Thresholds,
)
from streamer.model.sessions import open_session
from streamer.model.versions import list_versions, version_key

__all__ = [
    "LoadedModel",
    "ModelMetadata",
    "ReferenceHistogram",
    "RegistryEntry",
    "ScoreHistogram",
    "Thresholds",
    "list_models",
    "load_model",
    "open_model",
    "read_metadata",
    "resolve",
    "version_key",
]

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class RegistryEntry:
    """One version directory: its metadata (when readable), the aliases pointing at it, and
    why it must not be used (``problem``: unreadable metadata or a failed verification)."""

    name: str
    version: str
    path: Path
    metadata: ModelMetadata | None
    problem: str | None = None
    aliases: tuple[str, ...] = ()


def is_path_spec(spec: str) -> bool:
    """A spec naming a file or folder, not a registry entry (nothing to follow)."""
    if spec.startswith("models:/"):  # MLflow: a registry entry
        return False
    return "/" in spec or "\\" in spec or spec.endswith(".onnx") or Path(spec).is_file()


def resolve(spec: str, models_dir: Path) -> Path:
    """The ``model.onnx`` a spec names: a path (file or version directory), ``name`` (its
    highest version in ``models_dir``), ``name@version`` or ``name@alias``."""
    if is_path_spec(spec):
        path = Path(spec).expanduser()
        path = path / MODEL_FILE if path.is_dir() else path
        if not path.is_file():
            raise model_error(
                spec, f"{path} does not exist", "point it at a model.onnx or its folder"
            )
        return path
    name, _, version = spec.partition("@")
    if not NAME.fullmatch(name) or (version and not NAME.fullmatch(version)):
        raise model_error(spec, "not a path, name or name@version", "use e.g. fraud-gbt@1")
    model_dir = models_dir / name
    if not model_dir.is_dir():
        known = ", ".join(e.name for e in sorted(models_dir.glob("*")) if e.is_dir()) or "none"
        raise model_error(
            spec, f"no model {name!r} in {models_dir} (found: {known})", "fix the name"
        )
    versions = list_versions(model_dir)
    if not version:
        if not versions:
            raise model_error(spec, f"{model_dir} holds no versions", "train or copy one there")
        version = versions[-1]
    elif version not in versions:
        version = _follow_alias(spec, model_dir, version, versions)
    path = model_dir / version / MODEL_FILE
    if not path.is_file():
        raise model_error(spec, f"{path} does not exist", "restore it or pick another version")
    return path


def _follow_alias(spec: str, model_dir: Path, alias: str, versions: list[str]) -> str:
    try:
        pointers = read_aliases(model_dir).aliases
    except ModelError as exc:
        raise model_error(spec, str(exc), "or use name@version") from None
    target = pointers.get(alias)
    if target is None:
        found = ", ".join(versions) or "none"
        names = ", ".join(sorted(pointers)) or "none"
        raise model_error(
            spec,
            f"no version or alias {alias!r} (versions: {found}; aliases: {names})",
            "pick an existing version or alias",
        )
    if target not in versions:
        raise model_error(
            spec,
            f"alias {alias!r} points at version {target}, which does not exist",
            "restore that version or promote another one to the alias",
        )
    return target


def read_metadata(path: Path, spec: str | None = None) -> ModelMetadata:
    """The ``metadata.json`` beside a ``model.onnx``, validated."""
    meta_path = path.with_name(METADATA_FILE)
    spec = spec or str(path)
    try:
        return ModelMetadata.model_validate(json.loads(meta_path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise model_error(
            spec, f"{meta_path} is missing", "register the model with its metadata"
        ) from None
    except (ValueError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        detail = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(exc)
        raise model_error(
            spec, f"{meta_path} is invalid ({detail})", "fix or regenerate it"
        ) from None


def load_model(spec: str, models_dir: Path) -> LoadedModel:
    """Resolve, read and verify a model; ``ModelError`` (one line) when it must not be used.
    ``models:/name@alias`` and ``models:/name/version`` come from MLflow (``mlflow_registry``)."""
    model, check = open_model(spec, models_dir)
    check()
    return model


def open_model(spec: str, models_dir: Path) -> tuple[LoadedModel, Callable[[], None]]:
    """``load_model`` in two steps, so that a start-up can do other work during the second:
    every check but one is made here; the returned callable makes the last, the explainer's
    agreement with the ONNX model on the reference rows (its trees loaded, the signature
    check's session and the margin model's, and LightGBM over them: the slow one), and
    raises its ``ModelError``. Nothing may be scored with the model before that callable
    returned."""
    if spec.startswith("models:/"):
        from streamer.model import mlflow_registry

        return mlflow_registry.load(spec), _nothing  # verified whole: its retry needs it
    path = resolve(spec, models_dir)
    meta = read_metadata(path, spec)
    data = path.read_bytes()
    check_sha256(spec, path, data, meta.sha256)
    unknown = unknown_features(meta.feature_names)
    if unknown:
        raise model_error(
            spec,
            f"metadata lists features this streamer cannot compute: {', '.join(unknown)}",
            "upgrade streamer or choose a model built for this version",
        )
    width = len(meta.feature_names)
    if meta.input_shape[-1] != width:
        raise model_error(
            spec,
            f"{width} feature names but input width {meta.input_shape[-1]}",
            "fix the metadata or re-export the model",
        )
    try:
        meta.card_default_vector()
        meta.merchant_default_vector()
    except KeyError as exc:
        raise model_error(
            spec, f"defaults name {exc.args[0]}", "fix the metadata's defaults"
        ) from None
    session = _check_signature(spec, data, meta)
    explainer = open_explainer(spec, path, meta)
    model = LoadedModel(metadata=meta, path=path, onnx_bytes=data, explainer=explainer)
    if explainer is None:
        return model, _nothing
    return model, lambda: verify(spec, explainer, meta, data, session)


def _nothing() -> None:
    """No check left to make."""


def _check_signature(spec: str, data: bytes, meta: ModelMetadata) -> ort.InferenceSession:
    """The model's session, its inputs and outputs checked against the metadata."""
    try:
        session = open_session(data, optimization=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise model_error(
            spec, f"ONNX Runtime cannot load it ({type(exc).__name__})", "re-export it"
        ) from None
    inputs = session.get_inputs()
    width = len(meta.feature_names)
    problem = None
    if [i.name for i in inputs] != [meta.input_name]:
        problem = f"ONNX inputs {[i.name for i in inputs]} but metadata says [{meta.input_name!r}]"
    elif inputs[0].type != "tensor(float)":
        problem = f"ONNX input type is {inputs[0].type}, expected tensor(float)"
    elif len(inputs[0].shape) != 2 or inputs[0].shape[1] != width:
        problem = f"ONNX input shape {inputs[0].shape} does not take {width} features"
    outputs = {o.name: o for o in session.get_outputs()}
    if problem is None and sorted(outputs) != sorted(meta.output_names):
        problem = f"ONNX outputs {sorted(outputs)} but metadata says {sorted(meta.output_names)}"
    elif problem is None and meta.probability_output not in outputs:
        problem = f"probability output {meta.probability_output!r} is not an ONNX output"
    if problem is not None:
        raise model_error(spec, problem, "the metadata does not describe this file: re-export both")
    return session


def list_models(models_dir: Path) -> list[RegistryEntry]:
    """Every version directory under ``models_dir``, by name then version, each verified as
    at start-up (a tampered file shows its problem) and with the aliases pointing at it."""
    entries: list[RegistryEntry] = []
    if not models_dir.is_dir():
        return entries
    for model_dir in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        try:
            pointers, alias_problem = read_aliases(model_dir).aliases, None
        except ModelError as exc:
            pointers, alias_problem = {}, str(exc)
        for version in list_versions(model_dir):
            entries.append(_entry(models_dir, model_dir.name, version, pointers, alias_problem))
    return entries


def _entry(
    models_dir: Path, name: str, version: str, pointers: dict[str, str], alias_problem: str | None
) -> RegistryEntry:
    path = models_dir / name / version / MODEL_FILE
    meta: ModelMetadata | None = None
    problem = alias_problem
    try:
        meta = read_metadata(path, f"{name}@{version}")
        load_model(f"{name}@{version}", models_dir)
    except ModelError as exc:
        problem = str(exc)
    aliases = tuple(sorted(a for a, v in pointers.items() if v == version))
    return RegistryEntry(name, version, path, meta, problem, aliases)
