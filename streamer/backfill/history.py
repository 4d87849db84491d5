"""The offline feature builder: a history's events through the stream's own kernel.

``streamer features build HISTORY --out FILE`` writes each event's model input exactly as
the stream computed it: the same kernel, the same snapshot in Redis, and the velocity
state folded by the same definition (``enrichment.OfflineVelocity``) over the history in
the stream's order. ``streamer features load --history`` folds the same order into Redis,
so a new deployment starts warm.

The order: a dump of the input topic carries each event's ``partition`` and ``offset``
(columns of those names, or ``source_partition`` / ``source_offset``); events are taken in
(partition, offset) order, which is each card's order in the stream (the key is the card
id), and the offset is the event's position. A plain file's own order stands for the
partition's: the position is the row number.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import numpy as np

from streamer.backfill.formats import is_parquet, read_chunks
from streamer.errors import ConfigError, DependencyError, Rejection
from streamer.scoring.kernel import Scored, ScoringKernel

_POSITION_COLUMNS = (("partition", "offset"), ("source_partition", "source_offset"))

Event = dict[str, Any]
Source = tuple[int, int]


@dataclass
class BuildResult:
    """What a build did: rows read, events built, rows rejected (not scoreable)."""

    read: int = 0
    built: int = 0
    rejected: int = 0


def ordered_events(path: Path) -> Iterator[tuple[Event, Source]]:
    """The history's valid rows with their (partition, offset), in the stream's order."""
    positions = _positions(path)
    with path.open("rb") as handle:
        rows = [row for chunk in read_chunks(path, handle, 10_000) for row in chunk]
    if positions is not None and len(positions) != len(rows):
        raise ConfigError(f"{path}: {len(positions)} positions for {len(rows)} rows")
    sources = positions or [(0, i) for i in range(len(rows))]
    order = sorted(range(len(rows)), key=sources.__getitem__)
    for i in order:
        row = rows[i]
        if not isinstance(row, Rejection):
            yield row, sources[i]


def from_dump(path: Path) -> bool:
    """Whether ``path`` is a topic dump (its rows carry partition and offset)."""
    return _positions(path) is not None


def _positions(path: Path) -> list[Source] | None:
    """The (partition, offset) columns of a topic dump, or None for a plain file."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
        for part, off in _POSITION_COLUMNS:
            if {part, off} <= names:
                table = pq.read_table(path, columns=[part, off])
                parts: list[Any] = table[part].to_pylist()
                offs: list[Any] = table[off].to_pylist()
                return [(int(a), int(b)) for a, b in zip(parts, offs, strict=True)]
        return None
    with path.open("rb") as handle:
        reader = fastavro.reader(handle)
        schema: Any = reader.writer_schema
        fields = {f["name"] for f in schema["fields"]}
        for part, off in _POSITION_COLUMNS:
            if {part, off} <= fields:
                records: Iterator[Any] = iter(reader)
                return [(int(r[part]), int(r[off])) for r in records]
    return None


def build(
    source: Path,
    target: Path,
    *,
    kernel: ScoringKernel,
    chunk_size: int = 5000,
    allow_degraded: bool = False,
) -> BuildResult:
    """Write ``source``'s features to the Parquet file ``target`` (see the module doc)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not source.is_file():
        raise ConfigError(f"history file {source} does not exist")
    result = BuildResult()
    tables = []
    for chunk in _chunks(ordered_events(source), chunk_size):
        events = [event for event, _ in chunk]
        scored = kernel.score(events, [where for _, where in chunk])
        if scored.degraded and not allow_degraded:
            raise DependencyError(
                "the feature cache is unreachable; check STREAMER_REDIS_URL, or pass "
                "--allow-degraded to build with default snapshot features"
            )
        result.read += len(chunk)
        result.rejected += len(scored.rejected)
        result.built += len(scored.rows)
        if scored.matrix is not None and scored.rows:  # a chunk of rejected rows adds none
            tables.append(feature_table(events, [where for _, where in chunk], scored))
    if tables:
        pq.write_table(pa.concat_tables(tables), target, compression="zstd")
    else:
        raise ConfigError(f"{source} holds no event that could be built")
    return result


def feature_table(events: list[Event], sources: list[Source], scored: Scored) -> Any:
    """The built rows of one kernel run (``scored`` of ``events`` at ``sources``): ids,
    event time, (partition, offset) and the model's input widened to float64. The Spark
    builder (``streamer.spark``) writes its rows with this function too."""
    import pyarrow as pa

    if scored.matrix is None or scored.loaded is None:
        raise ValueError("feature_table needs a kernel result with scored rows")
    rows = scored.rows
    columns: dict[str, Any] = {
        "transaction_id": [events[r]["transaction_id"] for r in rows],
        "card_id": [events[r]["card_id"] for r in rows],
        "event_time": [events[r]["event_time"] for r in rows],
        "source_partition": [sources[r][0] for r in rows],
        "source_offset": [sources[r][1] for r in rows],
    }
    matrix = scored.matrix.astype(np.float64)
    names = scored.loaded.metadata.feature_names
    columns.update({name: matrix[:, j] for j, name in enumerate(names)})
    return pa.table(columns)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
