"""The model registry's files: ``models/<name>/<version>/model.onnx`` + ``metadata.json``.

A model is used only when its file's sha256, its ONNX inputs and outputs, and its feature
names all match its metadata; anything else is a ``ModelError`` that says what to do.
Versions sort naturally ("10" after "9", "1.10" after "1.9"); ``name`` means the highest.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streamer.errors import ModelError
from streamer.features.engineering import unknown_features
from streamer.features.layout import (
    CARD_DEFAULTS,
    CARD_FIELDS,
    MERCHANT_DEFAULTS,
    MERCHANT_FIELDS,
    defaults_vector,
)

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
_SETTING = "STREAMER_MODEL"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Thresholds(BaseModel):
    """Scores from ``review`` are REVIEW, from ``decline`` DECLINE."""

    model_config = ConfigDict(frozen=True)
    review: float = Field(ge=0.0, le=1.0)
    decline: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review > self.decline:
            raise ValueError(f"review {self.review} is above decline {self.decline}")
        return self


class ScoreHistogram(BaseModel):
    """Held-out score distribution: ``counts[i]`` scores in ``[bin_edges[i], bin_edges[i+1])``."""

    model_config = ConfigDict(frozen=True)
    bin_edges: tuple[float, ...]
    counts: tuple[int, ...]

    @model_validator(mode="after")
    def _consistent(self) -> ScoreHistogram:
        if len(self.bin_edges) != len(self.counts) + 1 or len(self.counts) == 0:
            raise ValueError("bin_edges must have exactly one more entry than counts")
        if any(b <= a for a, b in zip(self.bin_edges, self.bin_edges[1:], strict=False)):
            raise ValueError("bin_edges must increase")
        return self


class ModelMetadata(BaseModel):
    """``metadata.json``: what the model is, what it expects, how good it was, and its hash."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    format_version: int = 1
    name: str = Field(pattern=_NAME.pattern)
    version: str = Field(pattern=_NAME.pattern)
    created_at: datetime
    framework: str
    feature_names: tuple[str, ...] = Field(min_length=1)
    card_defaults: dict[str, float]
    merchant_defaults: dict[str, float]
    thresholds: Thresholds
    metrics: dict[str, float]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_name: str
    input_shape: tuple[int | None, int]
    output_names: tuple[str, ...]
    probability_output: str
    reference_scores: ScoreHistogram
    training: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None

    def card_default_vector(self) -> npt.NDArray[np.float64]:
        """Card defaults in ``CARD_FIELDS`` order (layout defaults for fields not recorded)."""
        return defaults_vector(CARD_FIELDS, self.card_defaults, CARD_DEFAULTS)

    def merchant_default_vector(self) -> npt.NDArray[np.float64]:
        """Merchant defaults in ``MERCHANT_FIELDS`` order."""
        return defaults_vector(MERCHANT_FIELDS, self.merchant_defaults, MERCHANT_DEFAULTS)


@dataclass(frozen=True)
class LoadedModel:
    """A verified model: its metadata, where it came from, and the ONNX bytes that were hashed."""

    metadata: ModelMetadata
    path: Path
    onnx_bytes: bytes = field(repr=False)

    @property
    def card_defaults(self) -> npt.NDArray[np.float64]:
        return self.metadata.card_default_vector()

    @property
    def merchant_defaults(self) -> npt.NDArray[np.float64]:
        return self.metadata.merchant_default_vector()


@dataclass(frozen=True)
class RegistryEntry:
    """One version directory: its metadata, or why it could not be read."""

    name: str
    version: str
    path: Path
    metadata: ModelMetadata | None
    problem: str | None = None


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Natural sort key: numeric parts compare as numbers and after textual ones."""
    return tuple(
        (1, int(part), "") if part.isdigit() else (0, 0, part)
        for part in re.split(r"[.\-_]", version)
    )


def _versions(model_dir: Path) -> list[str]:
    found = [p.name for p in model_dir.iterdir() if p.is_dir() and _NAME.fullmatch(p.name)]
    return sorted(found, key=version_key)


def _fail(spec: str, problem: str, todo: str) -> ModelError:
    return ModelError(f"model {spec!r}: {problem}; {todo} (setting {_SETTING})")


def resolve(spec: str, models_dir: Path) -> Path:
    """The ``model.onnx`` a spec names: a path (file or version directory), ``name`` (its
    highest version in ``models_dir``) or ``name@version``."""
    looks_like_path = "/" in spec or "\\" in spec or spec.endswith(".onnx")
    if looks_like_path or Path(spec).is_file():
        path = Path(spec).expanduser()
        path = path / MODEL_FILE if path.is_dir() else path
        if not path.is_file():
            raise _fail(spec, f"{path} does not exist", "point it at a model.onnx or its folder")
        return path
    name, _, version = spec.partition("@")
    if not _NAME.fullmatch(name) or (version and not _NAME.fullmatch(version)):
        raise _fail(spec, "not a path, name or name@version", "use e.g. fraud-gbt@1")
    model_dir = models_dir / name
    if not model_dir.is_dir():
        known = ", ".join(e.name for e in sorted(models_dir.glob("*")) if e.is_dir()) or "none"
        raise _fail(spec, f"no model {name!r} in {models_dir} (found: {known})", "fix the name")
    versions = _versions(model_dir)
    if not version:
        if not versions:
            raise _fail(spec, f"{model_dir} holds no versions", "train or copy one there")
        version = versions[-1]
    path = model_dir / version / MODEL_FILE
    if not path.is_file():
        found = ", ".join(versions) or "none"
        raise _fail(spec, f"{path} does not exist (versions: {found})", "pick an existing version")
    return path


def read_metadata(path: Path, spec: str | None = None) -> ModelMetadata:
    """The ``metadata.json`` beside a ``model.onnx``, validated."""
    meta_path = path.with_name(METADATA_FILE)
    spec = spec or str(path)
    try:
        return ModelMetadata.model_validate(json.loads(meta_path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise _fail(
            spec, f"{meta_path} is missing", "register the model with its metadata"
        ) from None
    except (ValueError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        detail = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(exc)
        raise _fail(spec, f"{meta_path} is invalid ({detail})", "fix or regenerate it") from None


def load_model(spec: str, models_dir: Path) -> LoadedModel:
    """Resolve, read and verify a model; ``ModelError`` (one line) when it must not be used."""
    path = resolve(spec, models_dir)
    meta = read_metadata(path, spec)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.sha256:
        raise _fail(
            spec,
            f"sha256 of {path} is {digest[:12]}…, metadata says {meta.sha256[:12]}…",
            "the file changed after registration: restore it or re-export with models/train.py",
        )
    unknown = unknown_features(meta.feature_names)
    if unknown:
        raise _fail(
            spec,
            f"metadata lists features this streamer cannot compute: {', '.join(unknown)}",
            "upgrade streamer or choose a model built for this version",
        )
    width = len(meta.feature_names)
    if meta.input_shape[-1] != width:
        raise _fail(
            spec,
            f"{width} feature names but input width {meta.input_shape[-1]}",
            "fix the metadata or re-export the model",
        )
    try:
        meta.card_default_vector()
        meta.merchant_default_vector()
    except KeyError as exc:
        raise _fail(spec, f"defaults name {exc.args[0]}", "fix the metadata's defaults") from None
    _check_signature(spec, data, meta)
    return LoadedModel(metadata=meta, path=path, onnx_bytes=data)


def _check_signature(spec: str, data: bytes, meta: ModelMetadata) -> None:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        raise _fail(
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
        raise _fail(spec, problem, "the metadata does not describe this file: re-export both")


def list_models(models_dir: Path) -> list[RegistryEntry]:
    """Every version directory under ``models_dir``, by name then version (no hash checks)."""
    entries: list[RegistryEntry] = []
    if not models_dir.is_dir():
        return entries
    for model_dir in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        for version in _versions(model_dir):
            path = model_dir / version / MODEL_FILE
            try:
                meta, problem = read_metadata(path), None
            except ModelError as exc:
                meta, problem = None, str(exc)
            if meta is not None and not path.is_file():
                meta, problem = None, f"{path} is missing"
            entries.append(RegistryEntry(model_dir.name, version, path, meta, problem))
    return entries
