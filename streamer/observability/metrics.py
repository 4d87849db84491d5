"""Prometheus metrics, collected per batch with numpy and read at scrape time.

Nothing here runs per event on the hot path: counters the pipeline keeps anyway
(``LoopStats``, ``CacheStats``) are read when Prometheus scrapes, and per-event values
(latencies, scores) are bucketed a whole batch at a time into ``BatchHistogram``s.

Every metric is listed in the README's Operations section.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from streamer.errors import Rejection
from streamer.observability.observer import Lag, Observer

if TYPE_CHECKING:
    from confluent_kafka import Message

    from streamer.scoring.kernel import Scored

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000)
SCORE_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.99,
)
STAGES = ("decode", "validate", "enrich", "score", "publish")


class BatchHistogram:
    """A Prometheus histogram fed whole arrays at a time (one ``np.searchsorted`` a batch)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # last: above every bound
        self.total = 0.0
        self._lock = threading.Lock()

    def observe(self, values: npt.ArrayLike) -> None:
        array = np.asarray(values, dtype=np.float64).ravel()
        if array.size == 0:
            return
        # side="left": a value equal to a bound belongs to that bound's bucket (le semantics).
        slots = np.searchsorted(self.bounds, array, side="left")
        binned = np.bincount(slots, minlength=self.counts.size)
        with self._lock:
            self.counts += binned
            self.total += float(array.sum())

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative (le, count) buckets including +Inf, and the sum."""
        with self._lock:
            counts, total = self.counts.copy(), self.total
        cumulative = np.cumsum(counts)
        buckets = [(_le(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1], strict=True)]
        buckets.append(("+Inf", float(cumulative[-1])))
        return buckets, total


def _le(bound: float) -> str:
    return repr(float(bound))


def psi(actual: npt.ArrayLike, expected: npt.ArrayLike, floor: float = 1e-4) -> float:
    """Population stability index of two histograms over the same bins (0: no drift)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.sum() <= 0 or e.sum() <= 0:
        return 0.0
    a = np.maximum(a / a.sum(), floor)
    e = np.maximum(e / e.sum(), floor)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class Telemetry(Observer):
    """What the loop and the kernel report, kept for ``StreamerCollector`` (an observer)."""

    reference_edges: Sequence[float] = (0.0, 1.0)
    reference_counts: Sequence[int] = (1,)
    latency: BatchHistogram = field(default_factory=lambda: BatchHistogram(LATENCY_BUCKETS))
    batch_size: BatchHistogram = field(default_factory=lambda: BatchHistogram(BATCH_BUCKETS))
    score: BatchHistogram = field(default_factory=lambda: BatchHistogram(SCORE_BUCKETS))
    stages: dict[str, BatchHistogram] = field(
        default_factory=lambda: {s: BatchHistogram(STAGE_BUCKETS) for s in STAGES}
    )
    decisions: Counter[str] = field(default_factory=Counter)
    feature_status: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    current_lag: dict[tuple[str, int], int] = field(default_factory=dict)
    _drift_counts: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self._drift_counts = np.zeros(len(self.reference_counts), dtype=np.int64)

    # -- observer hooks -----------------------------------------------------------------

    @contextmanager
    def batch(self, messages: Sequence[Message]) -> Iterator[None]:
        self.batch_size.observe((len(messages),))
        yield

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.stages[name].observe((time.perf_counter() - started,))

    def scored(self, result: Scored) -> None:
        self.scores(result.scores)
        self.decisions.update(result.decision_counts())
        self.feature_status.update(result.status_counts())

    def dead_lettered(self, rejection: Rejection) -> None:
        self.dead_letters[rejection.stage, rejection.error_class] += 1

    def delivered(self, latencies_ms: npt.NDArray[np.int64]) -> None:
        self.latency.observe(latencies_ms / 1000.0)

    def lag(self, lag: Lag) -> None:
        self.current_lag = dict(lag)

    # -- drift ----------------------------------------------------------------------------

    def scores(self, scores: npt.NDArray[np.float64]) -> None:
        self.score.observe(scores)
        inner = np.asarray(self.reference_edges, dtype=np.float64)[1:-1]
        self._drift_counts += np.bincount(
            np.searchsorted(inner, scores, side="right"), minlength=self._drift_counts.size
        )

    def drift(self) -> float:
        return psi(self._drift_counts, self.reference_counts)


@dataclass
class Sources:
    """Live objects read at scrape time (callables so nothing holds stale values)."""

    consumed: Callable[[], int]
    lookups: Callable[[], dict[tuple[str, str], int]]  # (entity, result) -> count
    redis_errors: Callable[[], int]
    breaker_state: Callable[[], str]
    in_flight: Callable[[], int]
    delivery_failures: Callable[[], int]
    model: Callable[[], tuple[str, str]]  # (name, version) scoring now


class StreamerCollector(Collector):
    """Turns ``Telemetry`` and ``Sources`` into Prometheus metric families."""

    def __init__(self, telemetry: Telemetry, sources: Sources) -> None:
        self.telemetry = telemetry
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        t, s = self.telemetry, self.sources
        yield _counter("streamer_events_consumed", "Input messages consumed.", [((), s.consumed())])
        yield _counter(
            "streamer_events_scored",
            "Events scored and handed to the producer, by decision.",
            [((d,), n) for d, n in sorted(t.decisions.items())],
            ["decision"],
        )
        yield _counter(
            "streamer_events_dead_lettered",
            "Messages sent to the dead-letter topic.",
            [((stage, reason), n) for (stage, reason), n in sorted(t.dead_letters.items())],
            ["stage", "reason"],
        )
        yield _counter(
            "streamer_feature_status",
            "Scored events by feature completeness.",
            [((k,), n) for k, n in sorted(t.feature_status.items())],
            ["status"],
        )
        yield _counter(
            "streamer_delivery_failures",
            "Outputs the broker did not acknowledge (their inputs are reprocessed).",
            [((), s.delivery_failures())],
        )
        yield _counter(
            "streamer_feature_lookups",
            "Feature lookups of each batch's unique entities: hit, miss (defaults) or "
            "degraded (cache unavailable).",
            sorted(s.lookups().items()),
            ["entity", "result"],
        )
        yield _counter(
            "streamer_redis_errors", "Failed feature cache round trips.", [((), s.redis_errors())]
        )
        state = StateSetMetricFamily(
            "streamer_redis_breaker_state", "Feature cache circuit breaker."
        )
        current = s.breaker_state()
        state.add_metric([], {k: k == current for k in ("closed", "open", "half-open")})
        yield state
        info = InfoMetricFamily("streamer_model", "The model scoring the stream.")
        name, version = s.model()
        info.add_metric([], {"name": name, "version": version})
        yield info
        yield _histogram(
            "streamer_end_to_end_latency_seconds",
            "Event time to broker acknowledgement of the scored event.",
            t.latency,
        )
        yield _histogram("streamer_batch_size", "Messages per micro-batch.", t.batch_size)
        yield _histogram("streamer_score", "Fraud scores.", t.score)
        stages = HistogramMetricFamily(
            "streamer_stage_duration_seconds", "Time per batch in each stage.", labels=["stage"]
        )
        for name, hist in t.stages.items():
            buckets, total = hist.snapshot()
            stages.add_metric([name], buckets, total)
        yield stages
        drift = GaugeMetricFamily(
            "streamer_score_drift_psi",
            "Population stability index of scores vs the model's reference.",
        )
        drift.add_metric([], t.drift())
        yield drift
        yield _gauge(
            "streamer_events_in_flight",
            "Consumed messages whose output is not acknowledged yet.",
            [((), s.in_flight())],
        )
        yield _gauge(
            "streamer_consumer_lag",
            "Messages behind the partition's end (high watermark).",
            [((tp, str(p)), lag) for (tp, p), lag in sorted(t.current_lag.items())],
            ["topic", "partition"],
        )


def _counter(
    name: str,
    doc: str,
    samples: Iterable[tuple[tuple[str, ...], float]],
    labels: Sequence[str] = (),
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for values, n in samples:
        family.add_metric(list(values), n)
    return family


def _gauge(
    name: str,
    doc: str,
    samples: Iterable[tuple[tuple[str, ...], float]],
    labels: Sequence[str] = (),
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for values, n in samples:
        family.add_metric(list(values), n)
    return family


def _histogram(name: str, doc: str, hist: BatchHistogram) -> HistogramMetricFamily:
    buckets, total = hist.snapshot()
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


def registry_for(collector: StreamerCollector) -> CollectorRegistry:
    """A registry of our own (no process-global default registry)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    return registry
