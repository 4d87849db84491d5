"""Scored events queued and not yet answered for, kept batch by batch (no work per event).

The stream's hot path shares one delivery callback across every scored event (a
``functools.partial`` per output cost more than the rest of its delivery report), so a
report names its output only by its bytes, which name its input (source partition and
offset, times). Reports are rare (the stream's producer reports failures only): on the
first one since the last settle, the batches are indexed by bytes. The same bytes twice
(one input scored twice within a millisecond, after a rewind) are the same input, so a
report may take either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import Message

from streamer.kafka.offsets import TopicPartition

Scored = tuple[TopicPartition, int, int, Message]
"""A scored event's input: source partition, offset, event time (epoch ms), the message."""


@dataclass(slots=True)
class QueuedBatch:
    """The scored events of one ``send_many`` call, row by row; ``answered`` rows are known
    failed or went the careful path, the others are waiting."""

    values: Sequence[bytes]
    positions: Sequence[tuple[TopicPartition, int]]
    event_times: Sequence[int]
    origins: Sequence[Message]
    answered: set[int] = field(default_factory=set)

    def waiting(self) -> Sequence[int]:
        """The rows still waiting for the broker's answer."""
        rows = range(len(self.values))
        return rows if not self.answered else [r for r in rows if r not in self.answered]


class PendingBatches:
    """Every ``QueuedBatch`` since the last settle; ``len`` is how many rows wait."""

    def __init__(self) -> None:
        self._batches: list[QueuedBatch] = []
        self._index: dict[bytes, list[tuple[QueuedBatch, int]]] | None = None
        self._waiting = 0

    def __len__(self) -> int:
        return self._waiting

    def add(self, queued: QueuedBatch) -> None:
        """Remember ``queued`` (before it is produced: a report served meanwhile finds it)."""
        self._batches.append(queued)
        self._waiting += len(queued.values) - len(queued.answered)
        if self._index is not None:
            self._index_rows(queued)

    def answer(self, queued: QueuedBatch, row: int) -> None:
        """``row`` of ``queued`` is no longer waiting (its failure is being handled)."""
        if row not in queued.answered:
            queued.answered.add(row)
            self._waiting -= 1

    def take(self, value: bytes | None) -> Scored | None:
        """The waiting scored event with these bytes, now answered (None: none waits)."""
        if value is None:
            return None
        if self._index is None:
            self._index = {}
            for queued in self._batches:
                self._index_rows(queued)
        rows = self._index.get(value, [])
        while rows:
            queued, row = rows.pop()
            if row not in queued.answered:
                self.answer(queued, row)
                (source, offset), event_time = queued.positions[row], queued.event_times[row]
                return source, offset, event_time, queued.origins[row]
        return None

    def take_all(self) -> list[QueuedBatch]:
        """Every batch (and nothing waits any more)."""
        taken, self._batches, self._index, self._waiting = self._batches, [], None, 0
        return taken

    def _index_rows(self, queued: QueuedBatch) -> None:
        assert self._index is not None
        for row, value in enumerate(queued.values):
            self._index.setdefault(value, []).append((queued, row))
