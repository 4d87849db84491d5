"""Following an MLflow alias while the stream runs (``models:/fraud-gbt@champion``).

The same hot swap as the file registry's ``ModelWatcher``: only how the target version is
found and loaded differs. Each poll is one cheap REST call (alias -> version number);
nothing is downloaded while the number stays the same. A new version is downloaded into
the cache, verified and warmed in the watcher's thread, off the hot path. A version that
is refused stays refused until the alias points elsewhere (its artifacts are immutable
in MLflow's eyes; a fixed upload is a new version). An unreachable MLflow is reported
once, like an alias that no longer resolves, and the current model keeps scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamer.errors import StreamerError
from streamer.model import mlflow_registry
from streamer.model.metadata import LoadedModel
from streamer.model.watcher import ModelWatcher


class MlflowWatcher(ModelWatcher):
    """A ``ModelWatcher`` whose spec is ``models:/name@alias`` (or a fixed version)."""

    def __init__(
        self, spec: str, models_dir: Path, *, current_version: str | None = None, **options: Any
    ) -> None:
        self._parsed = mlflow_registry.parse_spec(spec)
        current = current_version or mlflow_registry.resolve_version(spec)
        super().__init__(spec, models_dir, current_version=current, **options)

    def _poll_locked(self) -> bool:
        try:
            self._target = mlflow_registry.resolve_version(self.spec)
            self._problem = None
        except StreamerError as exc:
            self._target, self._problem = None, str(exc)
        if self._target == self._current and self._problem is None:
            return False
        return self._refused != (self._target, self._fingerprint())

    def _fingerprint(self) -> str:
        return f"{self._target}|{self._problem}"

    def _load(self, version: str) -> LoadedModel:
        return mlflow_registry.load_version(self._parsed.name, version)


def watcher_for(
    spec: str, models_dir: Path, *, interval_s: float, current_version: str
) -> ModelWatcher:
    """The watcher a spec needs: MLflow's for ``models:/``, the file registry's otherwise."""
    kind = MlflowWatcher if mlflow_registry.is_mlflow_spec(spec) else ModelWatcher
    return kind(spec, models_dir, interval_s=interval_s, current_version=current_version)
