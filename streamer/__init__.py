"""streamer: real-time card-payment fraud scoring on Kafka, Redis and ONNX Runtime.

What an application embeds: read the settings, build the scoring kernel from a model and
a feature source, or run the whole stream::

    from streamer import ScoringKernel, load_model, load_settings
    from streamer.testing import InMemoryFeatures

    kernel = ScoringKernel(load_model("fraud-gbt", Path("models")), InMemoryFeatures())
    scored = kernel.score(events, [(0, i) for i in range(len(events))])

Names are imported on first use, so ``import streamer`` stays cheap.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from streamer.lazy import exports

try:
    __version__ = version("streamer")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

_EXPORTS = {
    "Settings": "streamer.config.settings",
    "load_settings": "streamer.config.loader",
    "Clients": "streamer.clients",
    "ScoringKernel": "streamer.scoring.kernel",
    "Scored": "streamer.scoring.kernel",
    "FeatureSource": "streamer.scoring.kernel",
    "LoadedModel": "streamer.model.registry",
    "load_model": "streamer.model.registry",
    "FeatureCache": "streamer.features.cache",
    "Observer": "streamer.observability.observer",
    "Service": "streamer.service",
    "StopFlag": "streamer.service",
    "build": "streamer.service",
    "run": "streamer.service",
    "score_file": "streamer.backfill",
    "Rejection": "streamer.errors",
    "StreamerError": "streamer.errors",
    "ConfigError": "streamer.errors",
    "DependencyError": "streamer.errors",
    "ModelError": "streamer.errors",
}
__all__ = [
    "Clients",
    "ConfigError",
    "DependencyError",
    "FeatureCache",
    "FeatureSource",
    "LoadedModel",
    "ModelError",
    "Observer",
    "Rejection",
    "Scored",
    "ScoringKernel",
    "Service",
    "Settings",
    "StopFlag",
    "StreamerError",
    "__version__",
    "build",
    "load_model",
    "load_settings",
    "run",
    "score_file",
]

if TYPE_CHECKING:
    from streamer.backfill import score_file
    from streamer.clients import Clients
    from streamer.config.loader import load_settings
    from streamer.config.settings import Settings
    from streamer.errors import ConfigError, DependencyError, ModelError, Rejection, StreamerError
    from streamer.features.cache import FeatureCache
    from streamer.model.registry import LoadedModel, load_model
    from streamer.observability.observer import Observer
    from streamer.scoring.kernel import FeatureSource, Scored, ScoringKernel
    from streamer.service import Service, StopFlag, build, run


__getattr__ = exports(__name__, _EXPORTS)
