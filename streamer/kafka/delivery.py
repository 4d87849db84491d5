"""Delivery accounting: what the broker's answers mean for the inputs, and the figures.

An acknowledged output marks exactly its input done in the ``OffsetTracker`` (so its
offset may be committed) and gives an end-to-end latency; a failed one marks its input
failed, reprocessed after its partition is rewound. ``Ledger`` is the one place that
touches the tracker and the counts, whether an answer came alone (a delivery report) or in
bulk (settling: the producer holds nothing, so every output still waiting was
acknowledged).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter

import numpy as np
from confluent_kafka import Message

from streamer.errors import Rejection
from streamer.kafka.offsets import OffsetTracker, TopicPartition
from streamer.kafka.pending import QueuedBatch


@dataclass(frozen=True, slots=True)
class Output:
    """What a delivery report needs to know about the record it reports on."""

    source: TopicPartition
    offset: int
    event_time: int = 0
    origin: Message | None = None  # the input of a scored event
    rejection: Rejection | None = None  # set for a dead letter
    budget: int = 0  # a cut-down dead letter: the size it was cut to
    attempts: int = 0  # sends of a smallest-size dead letter so far


def now_ms() -> int:
    """Wall-clock epoch milliseconds, the unit of event times."""
    return time.time_ns() // 1_000_000


class Ledger:
    """Acknowledgements and failures into the offset tracker; counts and latencies out.

    ``delivered`` only grows while outputs are acknowledged: a caller that remembers it
    knows whether anything was acknowledged since (the refusals' give-up clock does).
    """

    def __init__(self, tracker: OffsetTracker) -> None:
        self._tracker = tracker
        self.delivered = 0
        self.failed = 0
        self.refused = 0
        self._latencies: list[int] = []

    def acknowledged(self, source: TopicPartition, offset: int, event_time: int) -> None:
        """The broker has an output: its input is done (and its latency known)."""
        self.delivered += 1
        self._tracker.ack(source, offset)
        if event_time:
            self._latencies.append(now_ms() - event_time)

    def settle(self, queued: QueuedBatch, now: int) -> None:
        """Every row of ``queued`` still waiting was acknowledged (at ``now``, epoch ms):
        the tracker takes a partition's run at once, latencies in one array pass."""
        rows = queued.waiting()
        if not rows:
            return
        positions = queued.positions
        if len(rows) < len(positions):
            positions = list(map(positions.__getitem__, rows))
        for tp, run in groupby(positions, key=itemgetter(0)):  # a partition's runs
            self._tracker.ack_all(tp, list(map(itemgetter(1), run)))
        times = np.asarray(queued.event_times, dtype=np.int64)
        if len(rows) < len(times):
            times = times[np.asarray(rows)]
        self._latencies += (now - times[times != 0]).tolist()
        self.delivered += len(rows)

    def fail(self, source: TopicPartition, offset: int) -> None:
        """An output failed for now: its input is reprocessed after the rewind."""
        self.failed += 1
        self._tracker.fail(source, offset)

    def take_latencies_ms(self) -> list[int]:
        """Event time to acknowledgement of the outputs acknowledged since the last call."""
        taken, self._latencies = self._latencies, []
        return taken
