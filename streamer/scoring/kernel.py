"""The scoring kernel: decoded events in, scored records and per-batch counts out.

validate → fetch features (one round trip) → columns → assemble → score (one model run)
→ decide → ScoredEvent records. The stream (``kafka.loop``), the file job (``backfill``)
and anything else that scores call this one object, so the flow exists once. A failure
of the features or the model on some events is contained: the batch is split until only
the events that fail on their own remain, and those come back as rejections.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamer.codec.columns import Column, Records, column_of, records_of, take
from streamer.errors import Rejection
from streamer.features.cache import DEGRADED, FEATURE_STATUSES, Features
from streamer.features.engineering import EventColumns, assemble, event_columns
from streamer.features.enrichment import positions_of, with_velocity
from streamer.features.velocity import VelocityBatch
from streamer.model.registry import LoadedModel
from streamer.model.scorer import Scorer
from streamer.observability.observer import Observer
from streamer.scoring.containment import StageError, run_contained
from streamer.scoring.decisions import DECISIONS, counts, decide
from streamer.scoring.explaining import Explaining
from streamer.scoring.reasons import Reasons, ReasonSettings
from streamer.scoring.records import ModelStamp, ShadowResult, scored_columns
from streamer.scoring.validation import all_plausible, validate

log = logging.getLogger(__name__)

Event = Mapping[str, Any]
Clock = Callable[[], int]


class FeatureSource(Protocol):
    """Where features come from: the Redis cache, or an in-memory one in tests."""

    def fetch(
        self,
        card_ids: Sequence[str],
        merchant_ids: Sequence[str],
        *,
        meanwhile: Callable[[], object] | None = None,
    ) -> Features:
        """Features for each event. ``meanwhile`` (never raising) may be run once while the
        read is in flight; a source that cannot split its read ignores it."""
        ...


class BatchScorer(Protocol):
    """A model run over a float32 feature matrix: P(fraud) per row."""

    def score(self, matrix: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ShadowModel:
    """A challenger scored beside the champion on the same features; it never decides."""

    model: LoadedModel
    scorer: BatchScorer

    @property
    def stamp(self) -> ModelStamp:
        return ModelStamp.of(self.model.metadata)


@dataclass(frozen=True)
class Scored:
    """What the kernel made of a batch: the scored rows and why the others were not scored.

    ``rows`` index the events given to ``ScoringKernel.score``; ``columns`` (the scored
    events, see ``records.scored_columns``), ``scores``, ``decisions`` and ``statuses`` are
    aligned with ``rows``; ``records`` are the scored events as dicts, made when asked for.
    """

    rows: list[int]
    columns: dict[str, Column]
    rejected: list[tuple[int, Rejection]]
    scores: npt.NDArray[np.float64]
    decisions: npt.NDArray[np.int8]
    statuses: npt.NDArray[np.int8]
    model: ModelStamp
    shadow: ShadowResult | None = None
    matrix: npt.NDArray[np.float32] | None = None  # the model's input, aligned with rows
    loaded: LoadedModel | None = None  # the model that scored (its metadata: references)

    @cached_property
    def records(self) -> list[dict[str, Any]]:
        return records_of(self.columns, len(self.rows))

    def event_times_ms(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.columns["event_time"], dtype=np.int64)

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
        feature_logging: bool = False,
        reasons: ReasonSettings | None = None,
    ) -> None:
        self.features = features
        self.feature_logging = feature_logging
        self.reasons = Reasons(reasons)
        self._explaining = Explaining(self.reasons)
        self.observer = observer or Observer()
        self.clock = clock
        self.shadow: ShadowModel | None = None
        self.shadow_failures = 0
        self._offered: tuple[LoadedModel, BatchScorer] | None = None
        self._writing: Callable[[], None] | None = None  # the velocity write in flight
        self._offer_lock = threading.Lock()
        self.use(model, scorer or Scorer(model))

    def use(self, model: LoadedModel, scorer: BatchScorer) -> None:
        """Score with ``model`` from now on (call between batches, on the scoring thread)."""
        self.model = model
        self.stamp = ModelStamp.of(model.metadata)
        self._scorer = scorer
        self._feature_names = tuple(model.metadata.feature_names)
        use_defaults = getattr(self.features, "use_defaults", None)
        if use_defaults is not None:  # missing entities get this model's training defaults
            use_defaults(model.card_defaults, model.merchant_defaults)

    def warm(self, rows: int = 256) -> None:
        """Run the model (and the shadow) once on ``rows`` zero rows: the first run's costs
        (ONNX Runtime's allocations) are paid at start-up, not by the first batch."""
        zeros = np.zeros((rows, len(self._feature_names)), dtype=np.float32)
        self._scorer.score(zeros)
        if self.shadow is not None:
            width = len(self.shadow.model.metadata.feature_names)
            self.shadow.scorer.score(np.zeros((rows, width), dtype=np.float32))

    def offer(self, model: LoadedModel, scorer: BatchScorer) -> None:
        """Swap to ``model`` before the next batch (thread-safe: for a model watcher)."""
        with self._offer_lock:
            self._offered = (model, scorer)

    def _take_offer(self) -> None:
        if self._offered is None:  # the common case: no lock taken
            return
        with self._offer_lock:
            offered, self._offered = self._offered, None
        if offered is not None:
            old = self.stamp.version
            self.use(*offered)
            log.info("model swapped between batches: %s -> %s", old, self.stamp.version)

    def score(
        self,
        events: Sequence[Event],
        sources: Sequence[tuple[int, int]],
        *,
        received_ms: int | None = None,
    ) -> Scored:
        """Score ``events``; ``sources`` gives each one's (partition, offset) for its record."""
        return self.start(events, sources, received_ms=received_ms).result()

    def start(
        self,
        events: Sequence[Event],
        sources: Sequence[tuple[int, int]],
        *,
        received_ms: int | None = None,
        overlap: bool = False,
        meanwhile: Callable[[], object] | None = None,
    ) -> Scoring:
        """``score`` up to the reason codes. With ``overlap`` the explainer runs from now on
        in a thread of its own (the C TreeSHAP's never takes the GIL): the caller scores its
        next batches meanwhile. ``Scoring.result`` completes it. ``meanwhile``: the
        caller's work, run while the feature read is in flight (``Aside``)."""
        self._take_offer()
        received = self.clock() if received_ms is None else received_ms
        with self.observer.stage("validate"):
            valid, rejected = _validated(events, received)
        shadow, matrices = self.shadow, _Matrices()
        chosen = take(events, valid)
        ok, scores, statuses, failures = self._contained(
            chosen, [sources[i][1] for i in valid], shadow, matrices, Aside(meanwhile)
        )
        rejected += _isolated(valid, failures)
        rows = [valid[i] for i in ok.tolist()]
        stamp = self.stamp
        decisions = decide(scores, stamp.review_threshold, stamp.decline_threshold)
        matrix, shadow_matrix = matrices.joined()
        shadowed = None
        if shadow and rows:
            shadowed, failed = _shadow_scores(shadow, shadow_matrix, len(rows), self.observer)
            self.shadow_failures += failed
        now = self.clock()
        columns = scored_columns(
            take(events, rows),
            scores=scores,
            decisions=decisions,
            statuses=statuses,
            partitions=[sources[r][0] for r in rows],
            offsets=[sources[r][1] for r in rows],
            model=stamp,
            received_ms=received,
            scored_ms=now,
            publish_ms=now,
            shadow=shadowed,
        )
        explained = None
        if matrix is not None:
            explained = self._explain(columns, matrix, decisions, overlap)
        result = Scored(rows, columns, rejected, scores, decisions, statuses, stamp, shadowed,
                        matrix, self.model)  # fmt: skip
        writing, self._writing = self._writing, None
        return Scoring(result, explained, writing, self.observer)

    def _explain(
        self,
        columns: dict[str, Column],
        matrix: Matrix,
        decisions: npt.NDArray[np.int8],
        overlap: bool,
    ) -> Callable[[], None]:
        """The columns that explain a decision: the logged input (``STREAMER_FEATURE_LOGGING``)
        at once; the returned callable sets the reason codes (``scoring.explaining``)."""
        if self.feature_logging:
            columns["features"] = logged_features(self._feature_names, matrix)
        explainer, names = self.model.explainer, self._feature_names
        return self._explaining.reasons_of(
            columns, explainer, names, matrix, decisions, overlap=overlap
        )

    def use_shadow(self, shadow: ShadowModel | None) -> None:
        """Score ``shadow`` beside the model from the next batch on (None: no shadow)."""
        self.shadow = shadow

    def _contained(
        self,
        chosen: Sequence[Event],
        offsets: Sequence[int],
        shadow: ShadowModel | None,
        matrices: _Matrices,
        aside: Aside,
    ) -> tuple[Any, Any, Any, Any]:
        """Score the valid events, splitting the batch until only those failing alone are left."""
        whole = self._enrich(chosen, offsets, send=True, meanwhile=aside)
        aside.done()

        def contained(subset: npt.NDArray[np.int64]) -> tuple[Any, Any]:
            if isinstance(whole, StageError):  # isolate the event that fails on its own
                part = self._enrich(take(chosen, subset.tolist()), [offsets[i] for i in subset])
            else:
                part = whole.take(subset)
            if isinstance(part, StageError):
                raise part
            scored = _scores(part, self._scorer, self._feature_names, shadow, self.observer)
            scores, matrix, shadow_matrix = scored
            matrices.add(subset, matrix, shadow_matrix)
            return scores, part.features.status()

        return run_contained(contained, np.arange(len(chosen)))

    def _enrich(
        self,
        events: Sequence[Event],
        offsets: Sequence[int],
        *,
        send: bool = False,
        meanwhile: Aside | None = None,
    ) -> _Enriched | StageError:
        """Features of a (sub-)batch: one feature read, the velocity fold, the columns."""
        with self.observer.stage("enrich"):
            try:
                cards, merchants = column_of(events, "card_id"), column_of(events, "merchant_id")
                features = self.features.fetch(cards, merchants, meanwhile=meanwhile)
                columns = event_columns(events)
                features, velocity = with_velocity(
                    features, events, columns, positions_of(offsets), self.model.card_defaults
                )
            except Exception as exc:  # noqa: BLE001 - contained: the batch is split
                return StageError("enrich", exc)
            if send:  # the whole batch: Redis writes its new states while it is scored
                self._writing = _send_velocity(self.features, velocity)
        return _Enriched(features, columns, velocity)


def _scores(
    enriched: _Enriched,
    scorer: BatchScorer,
    names: tuple[str, ...],
    shadow: ShadowModel | None,
    observer: Observer,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
    """Assemble and score enriched rows; failures are tagged with their stage.

    Also returns the shadow's matrix (the same one when it takes the same features)."""
    features, columns = enriched.features, enriched.columns
    with observer.stage("score"):  # the model's input and its run: one stage
        try:
            matrix = assemble(columns, features.card, features.merchant, names)
        except Exception as exc:
            raise StageError("enrich", exc) from exc
        try:
            scores = scorer.score(matrix)
        except Exception as exc:
            raise StageError("score", exc) from exc
    shadow_matrix = None
    if shadow is not None:
        shadow_names = shadow.model.metadata.feature_names
        shadow_matrix = (
            matrix
            if tuple(shadow_names) == names
            else _assemble_or_none(columns, features, shadow_names)
        )
    return scores, matrix, shadow_matrix


class Aside:
    """Work ``ScoringKernel.start``'s caller does while a batch's feature read is in flight:
    run once, by the source (``FeatureSource.fetch``'s ``meanwhile``) or else by ``done``.
    What it raises is kept until ``done``, so that it reaches the caller and is never taken
    for a failure of the batch's features (which the kernel contains)."""

    def __init__(self, work: Callable[[], object] | None) -> None:
        self._work = work
        self._error: BaseException | None = None

    def __call__(self) -> None:
        work, self._work = self._work, None
        if work is not None:
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - raised by ``done``
                self._error = exc

    def done(self) -> None:
        """Run the work if nobody did, then raise what it raised."""
        self()
        error, self._error = self._error, None
        if error is not None:
            raise error


def _send_velocity(features: object, velocity: VelocityBatch | None) -> Callable[[], None] | None:
    """Send a batch's new velocity states when the source records them (``record_velocity``)
    and return the wait for the write's reply (``velocity_written``), if it has one."""
    record = getattr(features, "record_velocity", None)
    if velocity is None or record is None:
        return None
    record(velocity)
    wait: Callable[[], None] | None = getattr(features, "velocity_written", None)
    return wait


class Scoring:
    """A batch ``ScoringKernel.start`` scored and decided, its reason codes perhaps still
    being found; ``result`` completes it (once)."""

    def __init__(
        self,
        scored: Scored,
        explained: Callable[[], None] | None,
        writing: Callable[[], None] | None,
        observer: Observer,
    ) -> None:
        self._scored, self._explained, self._writing = scored, explained, writing
        self._observer = observer
        self._done = False

    @property
    def rows(self) -> list[int]:
        return self._scored.rows

    @property
    def degraded(self) -> bool:
        return self._scored.degraded

    def result(self) -> Scored:
        """The batch whole: its reasons found and its velocity write answered (``_enrich``
        sent it: a state is written before its events' scores go out)."""
        if not self._done:
            self._done = True
            if self._explained is not None:
                with self._observer.stage("reasons"):
                    self._explained()
            if self._writing is not None:
                with self._observer.stage("velocity_write"):
                    self._writing()
            self._observer.scored(self._scored)
        return self._scored


def _shadow_scores(
    shadow: ShadowModel, matrix: npt.NDArray[np.float32] | None, n: int, observer: Observer
) -> tuple[ShadowResult, bool]:
    """The shadow's scores for the ``n`` scored rows, and whether it failed (NaN scores
    then: a shadow never touches the champion)."""
    stamp = shadow.stamp
    try:
        if matrix is None:
            raise ValueError("the shadow's features could not be assembled")
        with observer.stage("shadow"):
            scores = np.asarray(shadow.scorer.score(matrix), dtype=np.float64)
        decisions = decide(scores, stamp.review_threshold, stamp.decline_threshold)
        if scores.shape != (n,):
            raise ValueError(f"{scores.shape[0]} scores for {n} rows")
    except Exception as exc:  # noqa: BLE001 - a shadow never touches the champion
        log.warning("shadow model %s@%s failed: %s", stamp.name, stamp.version, exc)
        failed = ShadowResult(stamp, np.full(n, np.nan), np.zeros(n, dtype=np.int8))
        return failed, True
    return ShadowResult(stamp, scores, decisions, matrix, shadow.model), False


Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class _Enriched:
    """A batch's features (velocity fields already folded in), columns and velocity fold."""

    features: Features
    columns: EventColumns
    velocity: VelocityBatch | None = None

    def take(self, rows: npt.NDArray[np.int64]) -> _Enriched:
        if rows.size == len(self.columns):
            return self
        picked = rows.astype(np.intp)
        return _Enriched(self.features.take(picked), self.columns.take(picked))


class _Matrices:
    """The feature matrices (the model's, the shadow's) of the sub-batches that scored,
    joined in row order: containment scores sub-batches, drift and the shadow want all."""

    def __init__(self) -> None:
        self._parts: list[tuple[int, Matrix, Matrix | None]] = []

    def add(self, rows: npt.NDArray[np.int64], matrix: Matrix, shadow: Matrix | None) -> None:
        self._parts.append((int(rows[0]) if rows.size else -1, matrix, shadow))

    def joined(self) -> tuple[Matrix | None, Matrix | None]:
        parts = sorted(self._parts, key=lambda p: p[0])
        if not parts:
            return None, None
        if len(parts) == 1:
            return parts[0][1], parts[0][2]
        shadows = [s for _, _, s in parts if s is not None]
        shadow = np.concatenate(shadows) if len(shadows) == len(parts) else None
        return np.concatenate([m for _, m, _ in parts]), shadow


def logged_features(
    names: Sequence[str], matrix: npt.NDArray[np.float32]
) -> list[dict[str, float]]:
    """Each row of the model's input as ``{input name: value}`` (the ScoredEvent's
    ``features``): what was scored, float32 widened to double."""
    return [dict(zip(names, row, strict=True)) for row in matrix.astype(np.float64).tolist()]


def _assemble_or_none(
    columns: Any, features: Features, names: Sequence[str]
) -> npt.NDArray[np.float32] | None:
    try:
        return assemble(columns, features.card, features.merchant, names)
    except (KeyError, ValueError):
        return None


def _isolated(valid: list[int], failures: Any) -> list[tuple[int, Rejection]]:
    """The events containment isolated (failing on their own), as rejections."""
    out = []
    for i, failure in failures:
        log.warning("event isolated from its batch at stage %s: %s", failure.stage, failure)
        error = failure.error
        out.append((valid[i], Rejection(type(error).__name__, str(error), failure.stage)))
    return out


def _validated(events: Sequence[Event], now: int) -> tuple[list[int], list[tuple[int, Rejection]]]:
    """Rows fit to score, and the others with the reason. Events held as columns are
    checked a column at a time; only a batch with a doubtful event is walked event by
    event (``validate``, which alone says why an event is rejected)."""
    if isinstance(events, Records) and all_plausible(events.columns, len(events), now):
        return list(range(len(events))), []
    valid: list[int] = []
    rejected: list[tuple[int, Rejection]] = []
    for row, event in enumerate(events):
        problem = validate(event, now)
        if problem is None:
            valid.append(row)
        else:
            rejected.append((row, problem))
    return valid, rejected
