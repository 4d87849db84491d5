"""One backfill run: read chunks, score each with the kernel, write scores and rejects.

One Redis round trip and one model run per chunk, as in the stream. Output goes to
temporary files renamed into place only on success: a run that fails (Redis down, a
damaged input) leaves nothing that looks like a result, and no temporary file either.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from streamer.backfill.formats import Row, open_writer, read_chunks
from streamer.errors import ConfigError, DependencyError, Rejection
from streamer.scoring.kernel import ScoringKernel

OFFLINE_PARTITION = -1  # ScoredEvent.source_partition for file input; the offset is the row


@dataclass
class FileScore:
    """What a file run did."""

    read: int = 0
    scored: int = 0
    rejected: int = 0
    degraded: int = 0
    seconds: float = 0.0
    decisions: Counter[str] = field(default_factory=Counter)


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

    Formats follow the extensions (``.avro``, ``.parquet``). A backfill scored with default
    features would look valid and be wrong: unless ``allow_degraded``, an unreachable
    feature cache stops the run (``DependencyError``).
    """
    if not source.is_file():
        raise ConfigError(f"input file {source} does not exist")
    rejects_path = rejects or target.with_suffix(".rejects.jsonl")
    if len({source.resolve(), target.resolve(), rejects_path.resolve()}) < 3:
        raise ConfigError("the input, output and rejects files must be three different files")
    result = FileScore()
    started = time.monotonic()
    with ExitStack() as stack:
        fin = stack.enter_context(source.open("rb"))
        chunks = read_chunks(source, fin, chunk_size)
        out = stack.enter_context(_AtomicFile(target))
        frej = stack.enter_context(_AtomicFile(rejects_path))
        writer = open_writer(target, out)
        try:
            for chunk in chunks:
                writer.write(_score_chunk(chunk, result, kernel, frej, allow_degraded))
        finally:
            writer.close()  # also on failure: the temporary file is then removed
    result.seconds = time.monotonic() - started
    return result


class _AtomicFile:
    """A temporary file next to ``path``, renamed to ``path`` only if the block succeeds."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")

    def __enter__(self) -> IO[bytes]:
        try:
            self._file = self._tmp.open("wb")
        except OSError as exc:
            raise ConfigError(f"cannot write {self._path}: {exc.strerror}") from None
        return self._file

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._file.close()
        if exc_type is None:
            os.replace(self._tmp, self._path)
        else:
            self._tmp.unlink(missing_ok=True)


def _score_chunk(
    chunk: list[Row],
    result: FileScore,
    kernel: ScoringKernel,
    rejects: IO[bytes],
    allow_degraded: bool,
) -> list[dict[str, Any]]:
    """Scores of the chunk's valid rows; the others written to ``rejects`` with reasons."""
    first = result.read
    result.read += len(chunk)
    rows = [i for i, row in enumerate(chunk) if not isinstance(row, Rejection)]
    problems = [(i, row) for i, row in enumerate(chunk) if isinstance(row, Rejection)]
    records: list[dict[str, Any]] = []
    if rows:
        events: list[dict[str, Any]] = [chunk[i] for i in rows]  # type: ignore[misc]
        scored = kernel.score(events, [(OFFLINE_PARTITION, first + i) for i in rows])
        if scored.degraded and not allow_degraded:
            raise DependencyError(
                "the feature cache is unreachable; check STREAMER_REDIS_URL, or pass "
                "--allow-degraded to score with default features"
            )
        problems += [(rows[i], problem) for i, problem in scored.rejected]
        records = scored.records
        result.scored += len(records)
        result.degraded += len(records) if scored.degraded else 0
        result.decisions.update(scored.decision_counts())
    for row, problem in sorted(problems, key=lambda p: p[0]):
        result.rejected += 1
        event = chunk[row]
        line = {
            "row": first + row,
            "error_class": problem.error_class,
            "message": problem.message,
            "event": None if isinstance(event, Rejection) else event,
        }
        rejects.write(orjson.dumps(line, default=str) + b"\n")
    return records
