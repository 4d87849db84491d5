"""Keeping the kernel on the versions its specs name while the stream runs.

A ``ModelWatcher`` per spec (the model, and the shadow if any) polls the registry off the
hot path; a verified, warmed version is *offered* to the kernel, which swaps it in before
its next batch. A version that fails to load or verify is refused: the old one keeps
scoring, and a log line, a metric and the readiness body say why. ``SIGHUP`` checks at once.
"""

from __future__ import annotations

import logging
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from streamer.config.settings import Settings
from streamer.model.metadata import LoadedModel
from streamer.model.mlflow_watcher import watcher_for
from streamer.model.registry import is_path_spec, load_model
from streamer.model.scorer import Scorer
from streamer.model.watcher import ModelWatcher, Ready, Refused
from streamer.observability.model_collector import ModelSources
from streamer.observability.observer import Observer
from streamer.scoring.kernel import FeatureSource, ScoringKernel, ShadowModel
from streamer.scoring.reasons import reason_settings

log = logging.getLogger(__name__)


def load_shadow(spec: str, models_dir: Path, threads: int = 1) -> ShadowModel:
    """The shadow model a spec names, verified as at start-up."""
    model = load_model(spec, models_dir)
    return ShadowModel(model, Scorer(model, intra_op_threads=threads))


class ModelSwitch:
    """Watches the model and shadow specs and swaps the kernel's models between batches."""

    def __init__(
        self,
        kernel: ScoringKernel,
        models_dir: Path,
        *,
        model_spec: str,
        shadow_spec: str = "",
        interval_s: float = 5.0,
    ) -> None:
        self._kernel = kernel
        self.swaps = 0
        self.refused: Counter[str] = Counter()
        self.last_refusal: str | None = None
        self._watchers: list[tuple[ModelWatcher, bool]] = []
        if interval_s <= 0:
            return
        for spec, current, is_shadow in (
            (model_spec, kernel.model, False),
            (shadow_spec, kernel.shadow.model if kernel.shadow else None, True),
        ):
            if spec and current is not None and not is_path_spec(spec):
                version = current.path.parent.name
                watcher = watcher_for(
                    spec, models_dir, interval_s=interval_s, current_version=version
                )
                self._watchers.append((watcher, is_shadow))

    def start(self) -> None:
        """Start the watchers, and take SIGHUP as "check now" even with nothing to watch:
        its default action would end the process (an operator's routine signal must not)."""
        for watcher, is_shadow in self._watchers:
            on_ready = self._ready_shadow if is_shadow else self._ready_model
            watcher.start(on_ready=on_ready, on_refused=self._refused)
        signal.signal(signal.SIGHUP, lambda *_: self.check_now())

    def check_now(self) -> None:
        if not self._watchers:
            log.info(
                "SIGHUP: no model spec to follow (a path, or STREAMER_MODEL_WATCH_INTERVAL_S=0);"
                " nothing to check"
            )
        for watcher, _ in self._watchers:
            watcher.check_now()

    def stop(self) -> None:
        for watcher, _ in self._watchers:
            watcher.stop()

    def readiness(self) -> dict[str, Any]:
        stamp = self._kernel.stamp
        shadow = self._kernel.shadow
        return {
            "model_version": f"{stamp.name}@{stamp.version}",
            "shadow_version": f"{shadow.stamp.name}@{shadow.stamp.version}" if shadow else None,
            "model_refused": self.last_refusal,
        }

    def _ready_model(self, ready: Ready) -> None:
        self._kernel.offer(ready.model, ready.scorer)
        self.swaps += 1
        self.last_refusal = None

    def _ready_shadow(self, ready: Ready) -> None:
        self._kernel.use_shadow(ShadowModel(ready.model, ready.scorer))
        log.info("shadow model now %s", ready.version)
        self.swaps += 1

    def _refused(self, refused: Refused) -> None:
        self.refused[refused.version or "?"] += 1
        self.last_refusal = f"{refused.version}: {refused.reason}"
        log.error(
            "model version %s refused, the current one keeps scoring: %s",
            refused.version,
            refused.reason,
        )


def scoring_kernel(
    settings: Settings, model: LoadedModel, features: FeatureSource, observer: Observer
) -> tuple[ScoringKernel, ModelSwitch]:
    """The kernel every deployment scores with (the stream, ``serve``): the model, its
    shadow when one is set, and the switch that keeps both on what their specs name."""
    kernel = ScoringKernel(
        model,
        features,
        scorer=Scorer(model, intra_op_threads=settings.onnx_threads),
        observer=observer,
        feature_logging=settings.feature_logging,
        reasons=reason_settings(settings.reasons, settings.reasons_deny),
    )
    m = settings.models
    if m.shadow_spec:
        kernel.use_shadow(load_shadow(m.shadow_spec, m.models_dir, m.onnx_threads))
    switch = ModelSwitch(
        kernel,
        m.models_dir,
        model_spec=m.spec,
        shadow_spec=m.shadow_spec,
        interval_s=m.watch_interval_s,
    )
    return kernel, switch


def model_sources(kernel: ScoringKernel, switch: ModelSwitch) -> ModelSources:
    """What the model metrics read at scrape time."""
    return ModelSources(
        model=lambda: (kernel.stamp.name, kernel.stamp.version),
        shadow=lambda: (
            (kernel.shadow.stamp.name, kernel.shadow.stamp.version) if kernel.shadow else None
        ),
        swaps=lambda: switch.swaps,
        refused=lambda: dict(switch.refused),
        shadow_failures=lambda: kernel.shadow_failures,
    )
