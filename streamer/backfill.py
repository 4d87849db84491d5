"""Batch deployment: score an Avro file of transactions with the same code as the stream.

Backfills, replays and model comparisons read an Avro object container file of
TransactionEvents (any compatible writer schema: the file carries it), enrich each chunk
from the Redis feature cache with one round trip, score it with one ONNX Runtime run, and
write an Avro container file of ScoredEvents. Events that fail validation go to a JSON
Lines rejects file with their reason instead, so nothing is silently dropped.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import orjson

from streamer.codec.schemas import scored_schema, transaction_schema, without_logical_types
from streamer.errors import ConfigError, DependencyError
from streamer.features.cache import FeatureCache
from streamer.features.engineering import assemble, event_columns
from streamer.model.scorer import DECISIONS, Scorer, decide
from streamer.scoring.records import ModelStamp, scored_records
from streamer.scoring.validation import validate

OFFLINE_PARTITION = -1  # ScoredEvent.source_partition for file input; the offset is the row


@dataclass
class FileScore:
    """What a file run did."""

    read: int = 0
    scored: int = 0
    rejected: int = 0
    degraded: int = 0
    seconds: float = 0.0
    decisions: dict[str, int] = field(default_factory=dict)


def _chunks(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def score_file(
    source: Path,
    target: Path,
    *,
    cache: FeatureCache,
    scorer: Scorer,
    rejects: Path | None = None,
    chunk_size: int = 5000,
    allow_degraded: bool = False,
) -> FileScore:
    """Score every event in ``source`` into ``target``; invalid events into ``rejects``.

    A backfill scored with default features would look valid and be wrong: unless
    ``allow_degraded``, an unreachable feature cache stops the run (``DependencyError``).
    """
    if not source.is_file():
        raise ConfigError(f"input file {source} does not exist")
    meta = scorer.metadata
    stamp = ModelStamp(meta.name, meta.version, meta.thresholds.review, meta.thresholds.decline)
    result = FileScore()
    started = time.monotonic()
    rejects_path = rejects or target.with_suffix(".rejects.jsonl")
    with source.open("rb") as fin, target.open("wb") as fout, rejects_path.open("wb") as frej:
        try:
            reader = fastavro.reader(fin, reader_schema=without_logical_types(transaction_schema()))
        except (ValueError, fastavro.read.SchemaResolutionError) as exc:
            raise ConfigError(f"{source} is not an Avro file of TransactionEvents: {exc}") from None

        def scored() -> Iterator[dict[str, Any]]:
            for chunk in _chunks(reader, chunk_size):  # type: ignore[arg-type]
                yield from _score_chunk(chunk, result, cache, scorer, stamp, frej, allow_degraded)

        fastavro.writer(fout, without_logical_types(scored_schema()), scored(), codec="deflate")
    result.seconds = time.monotonic() - started
    return result


def _score_chunk(
    chunk: list[dict[str, Any]],
    result: FileScore,
    cache: FeatureCache,
    scorer: Scorer,
    stamp: ModelStamp,
    rejects: Any,
    allow_degraded: bool,
) -> list[dict[str, Any]]:
    now = time.time_ns() // 1_000_000
    events, offsets = [], []
    for row, event in enumerate(chunk, start=result.read):
        problem = validate(event, now)
        if problem is None:
            events.append(event)
            offsets.append(row)
        else:
            result.rejected += 1
            rejects.write(
                orjson.dumps(
                    {
                        "row": row,
                        "error_class": problem.error_class,
                        "message": problem.message,
                        "event": event,
                    }
                )
                + b"\n"
            )
    result.read += len(chunk)
    if not events:
        return []
    features = cache.fetch([e["card_id"] for e in events], [e["merchant_id"] for e in events])
    if features.degraded and not allow_degraded:
        raise DependencyError(
            "the feature cache is unreachable; check STREAMER_REDIS_URL, or pass "
            "--allow-degraded to score with default features"
        )
    feature_names = scorer.metadata.feature_names
    matrix = assemble(event_columns(events), features.card, features.merchant, feature_names)
    scores = scorer.score(matrix)
    decisions = decide(scores, stamp.review_threshold, stamp.decline_threshold)
    records = scored_records(
        events,
        scores=scores,
        decisions=decisions,
        statuses=features.status(),
        partitions=[OFFLINE_PARTITION] * len(events),
        offsets=offsets,
        model=stamp,
        received_ms=now,
        scored_ms=now,
        publish_ms=time.time_ns() // 1_000_000,
    )
    result.scored += len(records)
    result.degraded += len(records) if features.degraded else 0
    for code, n in enumerate(np.bincount(decisions, minlength=len(DECISIONS)).tolist()):
        result.decisions[DECISIONS[code]] = result.decisions.get(DECISIONS[code], 0) + n
    return records
