"""MLflow as the model registry: ``models:/fraud-gbt@champion`` or ``models:/fraud-gbt/3``.

Teams already run MLflow; its aliases say which version serves. A registered version's
artifacts are streamer's own files (``model/model.onnx`` + ``model/metadata.json``), so a
version from MLflow is verified exactly like one from the file registry, and by content:

- ``streamer models register`` records the ONNX file's sha256 as the version's
  ``streamer.sha256`` tag. A version without it is refused (nothing says what it should be).
- The local download cache is keyed by tracking server (normalised, without credentials),
  name, version AND that sha256: two servers (or one restarted, whose numbering starts
  again at 1) that hold different models under the same ``name/version`` never share an
  entry.
- Before any use (start-up, hot swap, shadow, ``serve``, ``score-file``, the gate) the
  artifact's sha256 must equal the tag. A cached copy that does not is dropped and fetched
  again; a fresh copy that does not is refused with one line naming both hashes.

The served metadata takes MLflow's name and version, so every scored event names the MLflow
version that scored it.

MLflow is an optional extra (``streamer[mlflow]``, the skinny client): it is imported on
first use only, and nothing else in streamer needs it. The client reads its own settings
(``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` / ``_TOKEN``), with
fail-fast defaults unless set (2 retries, 10 s per request instead of 7 retries with
exponential backoff and 120 s: minutes of waiting for a dead server). The cache is
``$XDG_CACHE_HOME/streamer/mlflow-models`` (default ``~/.cache``), the usual place for
data that can always be fetched again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streamer.errors import DependencyError, ModelError
from streamer.model.metadata import NAME, LoadedModel

log = logging.getLogger(__name__)

PREFIX = "models:/"
ARTIFACT_DIR = "model"
SHA_TAG = "streamer.sha256"
"""The version tag that records the ONNX file's sha256 (written by ``models register``)."""
_SHA256 = re.compile(r"[0-9a-f]{64}")
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


def server_key(uri: str | None = None) -> str:
    """The tracking server as a cache folder name: scheme, host, port and path, lower-cased,
    default ports and credentials dropped (``http://u:p@Host:80/`` -> ``http_host``), with a
    short digest so two servers never collide however their names are cut."""
    raw = (uri if uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "")).strip()
    parts = urlsplit(raw if "://" in raw else f"file://{raw}")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    normal = f"{scheme}://{host}{port}{parts.path.rstrip('/')}"
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", normal.split("://", 1)[1]).strip("_")[:60]
    digest = hashlib.sha256(normal.encode()).hexdigest()[:12]
    return f"{scheme}_{slug or 'local'}_{digest}"


@dataclass(frozen=True)
class VersionRecord:
    """What the server records for a version: where its artifacts are, and their sha256."""

    name: str
    version: str
    source: str
    sha256: str

    @property
    def spec(self) -> str:
        return f"{PREFIX}{self.name}/{self.version}"


def record_of(name: str, version: str, mlflow: Any | None = None) -> VersionRecord:
    """The version's artifact location and recorded sha256 (one REST call)."""
    if not NAME.fullmatch(name) or not version.isdigit():
        raise ModelError(f"model {name!r} version {version!r}: not an MLflow model version")
    mlflow = mlflow or client()
    spec = f"{PREFIX}{name}/{version}"
    try:
        found = mlflow.get_model_version(name, version)
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise translate(f"model {spec!r}", exc) from None
    sha = str((found.tags or {}).get(SHA_TAG, ""))
    if not _SHA256.fullmatch(sha):
        raise ModelError(
            f"model {spec!r} at {_redacted_uri()} records no {SHA_TAG} tag, so its artifacts "
            "cannot be verified; register versions with `streamer models register`"
        )
    return VersionRecord(name, version, str(found.source), sha)


def cache_dir(record: VersionRecord) -> Path:
    """Where a version is cached: server / name / version / sha256."""
    return cache_root() / server_key() / record.name / record.version / record.sha256


def download(record: VersionRecord) -> Path:
    """The version's folder in the local cache, downloaded once (staging dir + rename)."""
    target = cache_dir(record)
    if (target / "model.onnx").is_file() and (target / "metadata.json").is_file():
        return target
    staging = target.parent / f".staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        from mlflow.artifacts import download_artifacts

        download_artifacts(artifact_uri=record.source, dst_path=str(staging))
        _publish(staging, target, record.spec)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise translate(f"model {record.spec!r}", exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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
    """A version, verified by content against the server's record.

    A cached copy that fails verification (tampered with on disk, or written by another
    model) is dropped and fetched once more; a fresh copy that fails is refused."""
    record = record_of(name, version, mlflow)
    retries = 1 if cache_dir(record).is_dir() else 0
    while True:
        folder = download(record)
        try:
            return _verified(folder, record)
        except ModelError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if not retries:
                raise
            retries -= 1
            log.warning("%s; the cache entry was dropped and is fetched again", exc)


def _verified(folder: Path, record: VersionRecord) -> LoadedModel:
    from streamer.model.registry import load_model

    onnx = folder / "model.onnx"
    actual = hashlib.sha256(onnx.read_bytes()).hexdigest()
    if actual != record.sha256:
        raise ModelError(
            f"model {record.spec!r}: artifact sha256 {actual} is not the {record.sha256} "
            f"that MLflow at {_redacted_uri()} records ({SHA_TAG}); refused"
        )
    try:
        model = load_model(str(onnx), folder.parent)
    except ModelError as exc:
        raise ModelError(str(exc).replace(str(folder), record.spec)) from None
    meta = model.metadata.model_copy(update={"name": record.name, "version": record.version})
    return LoadedModel(meta, model.path, model.onnx_bytes, model.explainer)
