"""Prometheus export of the model side: which version scores, per-version score
distributions, windowed drift per input, the shadow's agreement, and hot swaps.

Every metric is listed in the README's Operations section.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from streamer.observability.metrics import Telemetry


@dataclass
class ModelSources:
    """Live model state read at scrape time."""

    model: Callable[[], tuple[str, str]]  # (name, version) scoring now
    shadow: Callable[[], tuple[str, str] | None]
    swaps: Callable[[], int]
    refused: Callable[[], dict[str, int]]  # version -> refusals
    shadow_failures: Callable[[], int]


class ModelCollector(Collector):
    """Turns the model half of ``Telemetry`` and ``ModelSources`` into metric families."""

    def __init__(self, telemetry: Telemetry, sources: ModelSources) -> None:
        self.telemetry = telemetry
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        t, s = self.telemetry, self.sources
        name, version = s.model()
        info = InfoMetricFamily("streamer_model", "The model scoring the stream.")
        info.add_metric([], {"name": name, "version": version})
        yield info
        shadow = s.shadow()
        shadow_info = InfoMetricFamily("streamer_shadow_model", "The shadow model, if any.")
        if shadow is not None:
            shadow_info.add_metric([], {"name": shadow[0], "version": shadow[1]})
        yield shadow_info
        scores = HistogramMetricFamily(
            "streamer_score", "Fraud scores, by model version.", labels=["model_version"]
        )
        for model_version, histogram in sorted(t.scores.items()):
            buckets, total = histogram.snapshot()
            scores.add_metric([model_version], buckets, total)
        yield scores
        yield from self._drift(f"{name}@{version}")
        yield from self._shadow_and_swaps()

    def _drift(self, champion: str) -> Iterator[Metric]:
        readings = self.telemetry.drift.read()
        psi = GaugeMetricFamily(
            "streamer_drift_psi",
            "Windowed population stability index vs the model's reference, per input "
            "(feature=score for the score); NaN while the window is too small.",
            labels=["model_version", "feature"],
        )
        events = GaugeMetricFamily(
            "streamer_drift_window_events", "Events in the drift window.", labels=["model_version"]
        )
        for key, reading in sorted(readings.items()):
            model_version = key.rpartition("@")[2]
            for feature, value in sorted(reading.psi.items()):
                psi.add_metric([model_version, feature], value)
            events.add_metric([model_version], reading.events)
        yield psi
        yield events
        legacy = GaugeMetricFamily(
            "streamer_score_drift_psi", "Windowed score PSI of the model scoring now."
        )
        current = readings.get(champion)
        legacy.add_metric([], current.psi.get("score", math.nan) if current else math.nan)
        yield legacy

    def _shadow_and_swaps(self) -> Iterator[Metric]:
        t, s = self.telemetry, self.sources
        agreement = CounterMetricFamily(
            "streamer_shadow_decisions",
            "Shadow decisions that agree or disagree with the scoring model's.",
            labels=["shadow_version", "agreement"],
        )
        for (shadow_version, agree), n in sorted(t.shadow_agreement.items()):
            agreement.add_metric([shadow_version, agree], n)
        yield agreement
        buckets, total = t.shadow_difference.snapshot()
        yield HistogramMetricFamily(
            "streamer_shadow_score_difference",
            "Shadow score minus the scoring model's score, per event.",
            buckets=buckets,
            sum_value=total,
        )
        failures = CounterMetricFamily("streamer_shadow_failures", "Batches the shadow failed.")
        failures.add_metric([], s.shadow_failures())
        yield failures
        swaps = CounterMetricFamily("streamer_model_swaps", "Models swapped in while running.")
        swaps.add_metric([], s.swaps())
        yield swaps
        refused = CounterMetricFamily(
            "streamer_model_swaps_refused",
            "New versions refused (failed to load or verify); the old one kept scoring.",
            labels=["version"],
        )
        for refused_version, n in sorted(s.refused().items()):
            refused.add_metric([refused_version], n)
        yield refused
