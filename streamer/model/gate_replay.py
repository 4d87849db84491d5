"""The promotion gate's replay: the same events through both versions, as the stream would.

Events come from an Avro container file (read like ``score-file`` reads it) or from the
start of a topic (decoded like ``streamer run`` decodes its input; undecodable messages are
skipped, as the stream would dead-letter them). Each version gets its own ``ScoringKernel``
with the Redis ``FeatureCache`` that ``streamer run`` builds for it, so features, defaults,
validation and decisions are exactly the stream's. The model run of every batch is timed
(the scorer is wrapped; the features cost both versions the same). A degraded
feature cache stops the gate: a comparison on default features would mean nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.clients import Clients
from streamer.errors import ConfigError, DependencyError
from streamer.model.gate import Replay
from streamer.model.metadata import LoadedModel
from streamer.model.scorer import Scorer
from streamer.scoring.decisions import DECISIONS
from streamer.scoring.kernel import ScoringKernel

Event = dict[str, Any]


def file_events(path: Path) -> list[Event]:
    """Every TransactionEvent in an Avro container file, timestamps as epoch ms."""
    import fastavro

    from streamer.backfill import epoch_millis
    from streamer.codec.schemas import transaction_schema

    if not path.is_file():
        raise ConfigError(f"events file {path} does not exist")
    with path.open("rb") as handle:
        try:
            reader = fastavro.reader(handle, reader_schema=transaction_schema())
            return [epoch_millis(dict(r)) for r in reader]  # type: ignore[arg-type]
        except (ValueError, fastavro.read.SchemaResolutionError) as exc:
            raise ConfigError(f"{path} is not an Avro file of TransactionEvents: {exc}") from None


def topic_events(clients: Clients, topic: str, max_events: int, idle_s: float = 5.0) -> list[Event]:
    """Up to ``max_events`` decoded events from the start of ``topic`` (a throwaway group,
    nothing committed); stops early after ``idle_s`` without a message."""
    from streamer.service.assembly import decoder

    decode = decoder(clients.settings, clients.schema_registry())
    consumer = clients.operator_consumer("gate", **{"auto.offset.reset": "earliest"})
    events: list[Event] = []
    try:
        consumer.subscribe([topic])
        last = time.monotonic()
        while len(events) < max_events and time.monotonic() - last < idle_s:
            messages = consumer.consume(min(500, max_events - len(events)), 1.0)
            good = [m for m in messages if m.error() is None]
            last = time.monotonic() if good else last
            decoded = [decode.decode(m.value()) for m in good]
            events.extend(d for d in decoded if isinstance(d, dict))
    finally:
        consumer.close()
    return events


class _TimedScorer:
    """A scorer that keeps how long each batch's model run took, in milliseconds."""

    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer
        self.ms: list[float] = []

    def score(self, matrix: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        began = time.perf_counter()
        try:
            return self._scorer.score(matrix)
        finally:
            self.ms.append((time.perf_counter() - began) * 1000)


def _batches(events: list[Event], size: int) -> Iterator[tuple[int, list[Event]]]:
    for start in range(0, len(events), size):
        yield start, events[start : start + size]


def replay(
    clients: Clients, model: LoadedModel, events: list[Event], batch_size: int = 500
) -> tuple[Replay, list[int]]:
    """One version over the events: (decisions and batch times, the rows it scored)."""
    from streamer.service.assembly import offline_source

    timed = _TimedScorer(Scorer(model, intra_op_threads=clients.settings.onnx_threads))
    kernel = ScoringKernel(model, offline_source(clients, model), scorer=timed)
    names = np.asarray(DECISIONS)
    decisions: list[np.ndarray] = []
    rows: list[int] = []
    for start, batch in _batches(events, batch_size):
        sources = [(-1, start + i) for i in range(len(batch))]
        scored = kernel.score(batch, sources)
        if scored.degraded:
            raise DependencyError(
                "the feature cache is unreachable; the gate compares models on real "
                "features only: check STREAMER_REDIS_URL"
            )
        decisions.append(names[scored.decisions])
        rows.extend(start + int(r) for r in scored.rows)
    joined = np.concatenate(decisions) if decisions else np.empty(0, dtype=names.dtype)
    return Replay(decisions=joined, batch_ms=tuple(timed.ms)), rows


def replay_both(
    clients: Clients, candidate: LoadedModel, champion: LoadedModel, events: list[Event]
) -> tuple[Replay, Replay]:
    """Both versions over the same events, one warm-up batch each first (not timed)."""
    if not events:
        raise ConfigError("no events to replay: the file or topic is empty")
    warm = events[: min(len(events), 50)]
    replay(clients, candidate, warm)
    replay(clients, champion, warm)
    cand, cand_rows = replay(clients, candidate, events)
    champ, champ_rows = replay(clients, champion, events)
    if cand_rows != champ_rows:  # validation does not depend on the model
        raise ConfigError("the two versions scored different events; report this as a bug")
    return cand, champ
