"""Prometheus metrics, collected per batch with numpy and read at scrape time.

Nothing here runs per event on the hot path: counters the pipeline keeps anyway
(``LoopStats``, ``CacheStats``) are read when Prometheus scrapes, and per-event values
(latencies, scores) are bucketed a whole batch at a time into ``BatchHistogram``s.

Every metric is listed in the README's Operations section.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from streamer.errors import Rejection
from streamer.observability.drift import DriftMonitor
from streamer.observability.observer import Lag, Observer
from streamer.scoring.decisions import DECISIONS

if TYPE_CHECKING:
    from confluent_kafka import Message

    from streamer.scoring.kernel import Scored

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SPAN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
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
STAGES = (
    "decode",
    "validate",
    "enrich",
    "score",
    "reasons",
    "shadow",
    "velocity_write",
    "publish",
)


class BatchHistogram:
    """A Prometheus histogram fed whole arrays at a time (one ``np.searchsorted`` a batch)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._bounds = self.bounds.tolist()
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

    def observe_one(self, value: float) -> None:
        """``observe`` of one value (a stage's time, a batch's size), without numpy's
        per-call overhead."""
        # bisect_left is searchsorted(side="left"); NaN compares false, so place it apart.
        slot = bisect_left(self._bounds, value) if value == value else len(self._bounds)  # noqa: PLR0124
        with self._lock:
            self.counts[slot] += 1
            self.total += value

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


DIFF_BUCKETS = (-0.5, -0.2, -0.1, -0.05, -0.02, -0.01, 0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


@dataclass
class Telemetry(Observer):
    """What the loop and the kernel report, kept for ``StreamerCollector`` (an observer).

    Scores and decisions are kept per model version (a swap or a shadow adds versions);
    drift is windowed per version against the references in the model's metadata.
    """

    drift: DriftMonitor = field(default_factory=DriftMonitor)
    latency: BatchHistogram = field(default_factory=lambda: BatchHistogram(LATENCY_BUCKETS))
    batch_size: BatchHistogram = field(default_factory=lambda: BatchHistogram(BATCH_BUCKETS))
    scores: dict[str, BatchHistogram] = field(default_factory=dict)  # by model version
    stages: dict[str, BatchHistogram] = field(
        default_factory=lambda: {s: BatchHistogram(STAGE_BUCKETS) for s in STAGES}
    )
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (decision, version)
    reasons: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (version, d, code)
    feature_status: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    shadow_agreement: Counter[tuple[str, str]] = field(default_factory=Counter)  # (version, agree)
    shadow_difference: BatchHistogram = field(default_factory=lambda: BatchHistogram(DIFF_BUCKETS))
    current_lag: dict[tuple[str, int], int] = field(default_factory=dict)
    transactions: Counter[str] = field(default_factory=Counter)  # by outcome
    commit_seconds: BatchHistogram = field(default_factory=lambda: BatchHistogram(COMMIT_BUCKETS))
    transaction_batches: BatchHistogram = field(
        default_factory=lambda: BatchHistogram(SPAN_BUCKETS)
    )
    _resumed_s: float = field(default=0.0, repr=False)  # time spent in ``resume`` so far

    # -- observer hooks -----------------------------------------------------------------

    @contextmanager
    def batch(self, messages: Sequence[Message]) -> Iterator[None]:
        self.batch_size.observe_one(len(messages))
        yield

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """A stage's own time: without the time another batch's work was resumed inside
        it (a backlog's batch completes while the next one's feature read is in flight)."""
        started, aside = time.perf_counter(), self._resumed_s
        yield
        own = time.perf_counter() - started - (self._resumed_s - aside)
        self.stages[name].observe_one(own)

    @contextmanager
    def resume(self, carried: object) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._resumed_s += time.perf_counter() - started

    def scored(self, result: Scored) -> None:
        version = result.model.version
        self._scored(version, result.scores, result.decision_counts())
        self.feature_status.update(result.status_counts())
        self._count_reasons(version, result.columns)
        times = result.event_times_ms() if result.rows else None
        if times is not None and result.loaded is not None and result.matrix is not None:
            self.drift.observe(result.loaded.metadata, times, result.scores, result.matrix)
        shadow = result.shadow
        if shadow is None or times is None:
            return
        ok = ~np.isnan(shadow.scores)
        if not ok.any():
            return
        names = DECISIONS
        counts = Counter(names[c] for c in shadow.decisions[ok].tolist())
        self._scored(shadow.model.version, shadow.scores[ok], counts, shadow=True)
        agree = int((shadow.decisions[ok] == result.decisions[ok]).sum())
        self.shadow_agreement[shadow.model.version, "agree"] += agree
        self.shadow_agreement[shadow.model.version, "disagree"] += int(ok.sum()) - agree
        self.shadow_difference.observe(shadow.scores[ok] - result.scores[ok])
        if shadow.loaded is not None and shadow.matrix is not None and ok.all():
            self.drift.observe(shadow.loaded.metadata, times, shadow.scores, shadow.matrix)

    def _count_reasons(self, version: str, columns: Mapping[str, Any]) -> None:
        """The scoring model's reason codes by decision (the shadow gives none: it never
        decides, so no shadow reason mixes with these)."""
        explained = columns.get("reasons", (None,))
        if len(explained) == 1 and explained[0] is None:  # the constant column: none
            return
        for decision, reasons in zip(columns["decision"], explained, strict=True):
            for reason in reasons or ():
                self.reasons[version, decision, reason["code"]] += 1

    def dead_lettered(self, rejection: Rejection) -> None:
        self.dead_letters[rejection.stage, rejection.error_class] += 1

    def delivered(self, latencies_ms: npt.NDArray[np.int64]) -> None:
        self.latency.observe(latencies_ms / 1000.0)

    def lag(self, lag: Lag) -> None:
        self.current_lag = dict(lag)

    def transaction(self, outcome: str, seconds: float, batches: int) -> None:
        self.transactions[outcome] += 1
        if outcome == "committed":
            self.commit_seconds.observe_one(seconds)
            self.transaction_batches.observe_one(batches)

    def _scored(
        self,
        version: str,
        scores: npt.NDArray[np.float64],
        decisions: Mapping[str, int],
        shadow: bool = False,
    ) -> None:
        histogram = self.scores.get(version)
        if histogram is None:
            histogram = self.scores[version] = BatchHistogram(SCORE_BUCKETS)
        histogram.observe(scores)
        if not shadow:  # shadow decisions are not decisions: they are in the agreement
            for decision, n in decisions.items():
                self.decisions[decision, version] += n
