"""Consumer lag: messages between each assigned partition's end and what is committable.

Asked of the broker at most every ``interval_s`` (``position`` and the cached high
watermark), never per batch: it is telemetry, and the loop thread must not wait on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Set

from confluent_kafka import Consumer, KafkaException, TopicPartition

Partition = tuple[str, int]


class LagMonitor:
    """Computes lag when due; ``soon()`` makes the next call due (new partitions)."""

    def __init__(
        self,
        consumer: Consumer,
        committable: Callable[[Partition], int | None],
        assigned: Set[Partition],
        interval_s: float = 2.0,
    ) -> None:
        self._consumer = consumer
        self._committable = committable
        self._assigned = assigned
        self._interval_s = interval_s
        self._due = 0.0

    def soon(self) -> None:
        self._due = 0.0

    def due(self) -> dict[Partition, int] | None:
        """The lag per partition when an update is due, else None."""
        now = time.monotonic()
        if now < self._due:
            return None
        self._due = now + self._interval_s
        return self.measure()

    def measure(self) -> dict[Partition, int] | None:
        assigned = [TopicPartition(t, p) for t, p in self._assigned]
        if not assigned:
            return {}
        try:
            positions = self._consumer.position(assigned)
        except KafkaException:
            return None
        lag: dict[Partition, int] = {}
        for tp in positions:
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            done = self._committable((tp.topic, tp.partition))
            at = done if done is not None else tp.offset
            if high >= 0 and at >= 0:
                lag[tp.topic, tp.partition] = max(high - at, 0)
        return lag
