"""Batch deployment: score a file of transactions with the stream's kernel.

Backfills, replays and model comparisons read an Avro object container file of
TransactionEvents (any compatible writer schema: the file carries it, logical types
included), score it in chunks through the same ``ScoringKernel`` as the stream (one Redis
round trip and one model run per chunk) and write a container file of ScoredEvents.
Events the kernel rejects go to a JSON Lines rejects file with their reason, so nothing is
silently dropped. Output goes to temporary files renamed into place only on success: a
failed run leaves nothing that looks like a result.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import fastavro
import orjson

from streamer.codec.schemas import scored_schema, transaction_schema, without_logical_types
from streamer.errors import ConfigError, DependencyError
from streamer.scoring.kernel import ScoringKernel

OFFLINE_PARTITION = -1  # ScoredEvent.source_partition for file input; the offset is the row
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


@dataclass
class FileScore:
    """What a file run did."""

    read: int = 0
    scored: int = 0
    rejected: int = 0
    degraded: int = 0
    seconds: float = 0.0
    decisions: Counter[str] = field(default_factory=Counter)


def epoch_millis(record: dict[str, Any]) -> dict[str, Any]:
    """Timestamps as epoch milliseconds, as the stream decodes them (fastavro converts a
    writer's ``timestamp-millis`` to ``datetime``)."""
    for name, value in record.items():
        if isinstance(value, datetime):
            aware = value if value.tzinfo else value.replace(tzinfo=UTC)
            record[name] = (aware - _EPOCH) // _MILLISECOND
    return record


def _chunks(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(records)
    while chunk := [epoch_millis(r) for r in itertools.islice(iterator, size)]:
        yield chunk


def score_file(
    source: Path,
    target: Path,
    *,
    kernel: ScoringKernel,
    rejects: Path | None = None,
    chunk_size: int = 5000,
    allow_degraded: bool = False,
) -> FileScore:
    """Score every event in ``source`` into ``target``; rejected events into ``rejects``.

    A backfill scored with default features would look valid and be wrong: unless
    ``allow_degraded``, an unreachable feature cache stops the run (``DependencyError``).
    """
    if not source.is_file():
        raise ConfigError(f"input file {source} does not exist")
    result = FileScore()
    started = time.monotonic()
    rejects_path = rejects or target.with_suffix(".rejects.jsonl")
    with ExitStack() as stack:
        fin = stack.enter_context(source.open("rb"))
        try:
            reader = fastavro.reader(fin, reader_schema=transaction_schema())
        except (ValueError, fastavro.read.SchemaResolutionError) as exc:
            raise ConfigError(f"{source} is not an Avro file of TransactionEvents: {exc}") from None
        fout = stack.enter_context(_AtomicFile(target))
        frej = stack.enter_context(_AtomicFile(rejects_path))

        def scored() -> Iterator[dict[str, Any]]:
            for chunk in _chunks(reader, chunk_size):  # type: ignore[arg-type]
                yield from _score_chunk(chunk, result, kernel, frej, allow_degraded)

        fastavro.writer(fout, without_logical_types(scored_schema()), scored(), codec="deflate")
    result.seconds = time.monotonic() - started
    return result


class _AtomicFile:
    """A temporary file next to ``path``, renamed to ``path`` only if the block succeeds."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")

    def __enter__(self) -> IO[bytes]:
        self._file = self._tmp.open("wb")
        return self._file

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._file.close()
        if exc_type is None:
            os.replace(self._tmp, self._path)
        else:
            self._tmp.unlink(missing_ok=True)


def _score_chunk(
    chunk: list[dict[str, Any]],
    result: FileScore,
    kernel: ScoringKernel,
    rejects: IO[bytes],
    allow_degraded: bool,
) -> list[dict[str, Any]]:
    first = result.read
    result.read += len(chunk)
    scored = kernel.score(chunk, [(OFFLINE_PARTITION, first + i) for i in range(len(chunk))])
    if scored.degraded and not allow_degraded:
        raise DependencyError(
            "the feature cache is unreachable; check STREAMER_REDIS_URL, or pass "
            "--allow-degraded to score with default features"
        )
    for row, problem in sorted(scored.rejected, key=lambda r: r[0]):
        result.rejected += 1
        line = {
            "row": first + row,
            "error_class": problem.error_class,
            "message": problem.message,
            "event": chunk[row],
        }
        rejects.write(orjson.dumps(line, default=str) + b"\n")
    result.scored += len(scored.records)
    result.degraded += len(scored.records) if scored.degraded else 0
    result.decisions.update(scored.decision_counts())
    return scored.records
