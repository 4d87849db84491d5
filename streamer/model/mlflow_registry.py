"""MLflow as the model registry: ``models:/fraud-gbt@champion`` or ``models:/fraud-gbt/3``.

Teams already run MLflow; its aliases say which version serves. A registered version's
artifacts are streamer's own files (``model/model.onnx`` + ``model/metadata.json``), so a
version from MLflow is verified exactly like one from the file registry: it is downloaded
into a local cache keyed by name and version, then loaded through ``registry.load_model``
(sha256, ONNX signature, features). The served metadata takes MLflow's name and version,
so every scored event names the MLflow version that scored it.

MLflow is an optional extra (``streamer[mlflow]``, the skinny client): it is imported on
first use only, and nothing else in streamer needs it. The client reads its own settings
(``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` / ``_TOKEN``), with
fail-fast defaults unless set (2 retries, 10 s per request instead of 7 retries with
exponential backoff and 120 s: minutes of waiting for a dead server). The cache is
``$XDG_CACHE_HOME/streamer/mlflow-models`` (default ``~/.cache``), the usual place for
data that can always be fetched again.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.errors import DependencyError, ModelError
from streamer.model.metadata import NAME, LoadedModel

PREFIX = "models:/"
ARTIFACT_DIR = "model"
_SPEC = re.compile(
    r"models:/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
    r"(?:@(?P<alias>[A-Za-z][\w-]*)|/(?P<version>[0-9]+))"
)


@dataclass(frozen=True)
class MlflowSpec:
    """A parsed ``models:/name@alias`` or ``models:/name/version``."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"{PREFIX}{self.name}@{self.alias}" if self.alias else self.at(self.version or "")

    def at(self, version: str) -> str:
        return f"{PREFIX}{self.name}/{version}"


def is_mlflow_spec(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse_spec(spec: str) -> MlflowSpec:
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise ModelError(
            f"model {spec!r}: not an MLflow spec; use models:/NAME@ALIAS or models:/NAME/VERSION "
            "(setting STREAMER_MODEL)"
        )
    return MlflowSpec(match["name"], match["alias"], match["version"])


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "streamer" / "mlflow-models"


def client() -> Any:
    """An ``MlflowClient`` for ``MLFLOW_TRACKING_URI`` (import deferred: optional extra)."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ModelError(
            "models:/ specs need the MLflow client: pip install 'streamer[mlflow]'"
        ) from None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise ModelError("models:/ specs need MLFLOW_TRACKING_URI (the MLflow server's URL)")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    return MlflowClient()


def translate(what: str, exc: Exception) -> ModelError | DependencyError:
    """MLflow's errors as one line: not found is a model problem, the rest a dependency."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException) and exc.error_code in {
        "RESOURCE_DOES_NOT_EXIST",
        "INVALID_PARAMETER_VALUE",
    }:
        first = str(exc.message).splitlines()[0][:200]
        return ModelError(f"{what}: {first}")
    uri = _redacted_uri()
    return DependencyError(f"{what}: MLflow at {uri} failed ({type(exc).__name__}); is it up?")


def _redacted_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return re.sub(r"//[^/@]*@", "//***@", uri)


def resolve_version(spec: str, mlflow: Any | None = None) -> str:
    """The version a spec names now: one cheap REST call for an alias, none for a version."""
    parsed = parse_spec(spec)
    if parsed.version:
        return parsed.version
    mlflow = mlflow or client()
    try:
        found = mlflow.get_model_version_by_alias(parsed.name, parsed.alias)
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise translate(f"model {spec!r}", exc) from None
    return str(found.version)


def download(name: str, version: str, mlflow: Any | None = None) -> Path:
    """The version's folder in the local cache, downloaded once (staging dir + rename)."""
    if not NAME.fullmatch(name) or not version.isdigit():
        raise ModelError(f"model {name!r} version {version!r}: not an MLflow model version")
    target = cache_root() / name / version
    if (target / "model.onnx").is_file() and (target / "metadata.json").is_file():
        return target
    mlflow = mlflow or client()
    spec = f"{PREFIX}{name}/{version}"
    try:
        source = mlflow.get_model_version(name, version).source
        staging = target.parent / f".staging-{version}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            from mlflow.artifacts import download_artifacts

            download_artifacts(artifact_uri=source, dst_path=str(staging))
            _publish(staging, target, spec)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise translate(f"model {spec!r}", exc) from None
    return target


def _publish(staging: Path, target: Path, spec: str) -> None:
    found = [p.parent for p in staging.rglob("model.onnx")]
    if len(found) != 1 or not (found[0] / "metadata.json").is_file():
        raise ModelError(
            f"model {spec!r}: its artifacts hold no single model.onnx + metadata.json; "
            "register it with `streamer models register`"
        )
    if not target.exists():
        found[0].rename(target)


def load(spec: str, mlflow: Any | None = None) -> LoadedModel:
    """Resolve, download (once) and verify a version, as the file registry would."""
    version = resolve_version(spec, mlflow)
    return load_version(parse_spec(spec).name, version, mlflow)


def load_version(name: str, version: str, mlflow: Any | None = None) -> LoadedModel:
    """A version, verified; a cached copy that fails verification is dropped, so the next
    try downloads it again (the server's copy may have been fixed)."""
    from streamer.model.registry import load_model

    folder = download(name, version, mlflow)
    try:
        model = load_model(str(folder / "model.onnx"), folder.parent)
    except ModelError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise ModelError(str(exc).replace(str(folder), f"{PREFIX}{name}/{version}")) from None
    meta = model.metadata.model_copy(update={"name": name, "version": version})
    return LoadedModel(metadata=meta, path=model.path, onnx_bytes=model.onnx_bytes)
