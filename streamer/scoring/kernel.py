"""The scoring kernel: decoded events in, scored records and per-batch counts out.

validate → fetch features (one round trip) → columns → assemble → score (one model run)
→ decide → ScoredEvent records. The stream (``kafka.loop``), the file job (``backfill``)
and anything else that scores call this one object, so the flow exists once. A failure
of the features or the model on some events is contained: the batch is split until only
the events that fail on their own remain, and those come back as rejections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamer.errors import Rejection
from streamer.features.cache import DEGRADED, FEATURE_STATUSES, Features
from streamer.features.engineering import assemble, event_columns
from streamer.model.registry import LoadedModel
from streamer.model.scorer import Scorer
from streamer.observability.observer import Observer
from streamer.scoring.containment import StageError, run_contained
from streamer.scoring.decisions import DECISIONS, counts, decide
from streamer.scoring.records import ModelStamp, scored_records
from streamer.scoring.validation import validate

log = logging.getLogger(__name__)

Event = Mapping[str, Any]
Clock = Callable[[], int]


class FeatureSource(Protocol):
    """Where features come from: the Redis cache, or an in-memory one in tests."""

    def fetch(self, card_ids: Sequence[str], merchant_ids: Sequence[str]) -> Features: ...


class BatchScorer(Protocol):
    """A model run over a float32 feature matrix: P(fraud) per row."""

    def score(self, matrix: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Scored:
    """What the kernel made of a batch: the scored rows and why the others were not scored.

    ``rows`` index the events given to ``ScoringKernel.score``; ``records``, ``scores``,
    ``decisions`` and ``statuses`` are aligned with ``rows``.
    """

    rows: list[int]
    records: list[dict[str, Any]]
    rejected: list[tuple[int, Rejection]]
    scores: npt.NDArray[np.float64]
    decisions: npt.NDArray[np.int8]
    statuses: npt.NDArray[np.int8]
    model: ModelStamp

    @property
    def degraded(self) -> bool:
        """True when features were unavailable and defaults were used for every event."""
        return bool(self.statuses.size) and bool((self.statuses == DEGRADED).all())

    def decision_counts(self) -> dict[str, int]:
        return counts(self.decisions, DECISIONS)

    def status_counts(self) -> dict[str, int]:
        return counts(self.statuses, FEATURE_STATUSES)


class ScoringKernel:
    """Scores batches of decoded TransactionEvents with one model and one feature source."""

    def __init__(
        self,
        model: LoadedModel,
        features: FeatureSource,
        *,
        scorer: BatchScorer | None = None,
        observer: Observer | None = None,
        clock: Clock = now_ms,
    ) -> None:
        self.features = features
        self.observer = observer or Observer()
        self.clock = clock
        self.use(model, scorer or Scorer(model))

    def use(self, model: LoadedModel, scorer: BatchScorer) -> None:
        """Score with ``model`` from the next batch on (call between batches)."""
        self.model = model
        self.stamp = ModelStamp.of(model.metadata)
        self._scorer = scorer
        self._feature_names = tuple(model.metadata.feature_names)

    def score(
        self,
        events: Sequence[Event],
        sources: Sequence[tuple[int, int]],
        *,
        received_ms: int | None = None,
    ) -> Scored:
        """Score ``events``; ``sources`` gives each one's (partition, offset) for its record."""
        received = self.clock() if received_ms is None else received_ms
        with self.observer.stage("validate"):
            valid, rejected = _validated(events, received)
        ok, scores, statuses, failures = run_contained(
            lambda subset: self._features_and_scores([events[valid[i]] for i in subset.tolist()]),
            np.arange(len(valid)),
        )
        for i, failure in failures:
            log.warning("event isolated from its batch at stage %s: %s", failure.stage, failure)
            error = failure.error
            rejected.append((valid[i], Rejection(type(error).__name__, str(error), failure.stage)))
        rows = [valid[i] for i in ok.tolist()]
        stamp = self.stamp
        decisions = decide(scores, stamp.review_threshold, stamp.decline_threshold)
        now = self.clock()
        records = scored_records(
            [events[r] for r in rows],
            scores=scores,
            decisions=decisions,
            statuses=statuses,
            partitions=[sources[r][0] for r in rows],
            offsets=[sources[r][1] for r in rows],
            model=stamp,
            received_ms=received,
            scored_ms=now,
            publish_ms=now,
        )
        result = Scored(rows, records, rejected, scores, decisions, statuses, stamp)
        self.observer.scored(result)
        return result

    def _features_and_scores(
        self, events: list[Event]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int8]]:
        """Enrich, assemble and score a (sub-)batch; failures are tagged with their stage."""
        with self.observer.stage("enrich"):
            try:
                features = self.features.fetch(
                    [e["card_id"] for e in events], [e["merchant_id"] for e in events]
                )
                matrix = assemble(
                    event_columns(events), features.card, features.merchant, self._feature_names
                )
            except Exception as exc:
                raise StageError("enrich", exc) from exc
        with self.observer.stage("score"):
            try:
                scores = self._scorer.score(matrix)
            except Exception as exc:
                raise StageError("score", exc) from exc
        return scores, features.status()


def _validated(events: Sequence[Event], now: int) -> tuple[list[int], list[tuple[int, Rejection]]]:
    """Rows fit to score, and the others with the reason."""
    valid: list[int] = []
    rejected: list[tuple[int, Rejection]] = []
    for row, event in enumerate(events):
        problem = validate(event, now)
        if problem is None:
            valid.append(row)
        else:
            rejected.append((row, problem))
    return valid, rejected
