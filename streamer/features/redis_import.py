"""redis imported without OpenTelemetry's metrics SDK, which streamer never asks it for.

redis-py imports ``opentelemetry.sdk.metrics`` whenever it is installed (it is: streamer's
tracing installs the SDK) for metrics it records only once ``redis.observability`` is
set up, which streamer never does: 20-25 ms of every start-up on the machine of
docs/performance.md. ``install`` (run by this package) makes the first ``import redis``,
whenever and wherever it comes, see that module as missing, which redis-py takes for the
SDK not being installed; anyone asking for it afterwards imports it as usual. No other
thread of a start-up imports it meanwhile. An import of either before ``install`` is left
as it is.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

from streamer.imports import without

METRICS_SDK = "opentelemetry.sdk.metrics"


class _WithoutMetrics(importlib.abc.Loader):
    """redis's own loader, run while the metrics SDK looks missing."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with without(METRICS_SDK):
            self._loader.exec_module(module)


class _FirstRedisImport(importlib.abc.MetaPathFinder):
    """Finds ``redis`` once, as the finders after it do, with its loader wrapped."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "redis":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _WithoutMetrics(spec.loader)
        return spec


def install() -> None:
    """Have the first ``import redis`` leave the metrics SDK out (nothing when redis or
    the SDK is imported already, or when installed before)."""
    if "redis" in sys.modules or METRICS_SDK in sys.modules:
        return
    if not any(isinstance(finder, _FirstRedisImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FirstRedisImport())
