"""Commit strategies: at-least-once through the consumer, exactly-once through a transaction.

The loop calls one ``CommitStrategy`` around every batch and never asks which guarantee
it runs with (the shape of quix-streams' ``Checkpoint``):

- ``begin(batch)``: before any output of the batch is produced;
- ``end(batch)``: after every output of the batch was queued;
- ``tick()``: once per loop step, after delivery reports were served;
- ``drain()``: before partitions are given up or the process stops;
- ``forget(partitions)``: partitions revoked (after ``drain``) or lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from streamer.kafka.batch import Batch
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import Publisher
from streamer.kafka.transactions import (
    TransactionAbortedError,
    Transactions,
    batch_start,
    commit_offsets,
)

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class CommitStrategy(Protocol):
    """When input offsets become committed, relative to the outputs they produced."""

    def begin(self, batch: Batch) -> None: ...
    def end(self, batch: Batch) -> None: ...
    def retry(self, batch: Batch) -> None: ...
    def tick(self) -> None: ...
    def drain(self) -> None: ...
    def forget(self, partitions: Iterable[Partition]) -> None: ...
    def committable(self, tp: Partition) -> int | None: ...
    @property
    def rewinds(self) -> int: ...


def _seek(consumer: Consumer, rewinds: dict[Partition, int], why: str) -> int:
    for (topic, partition), offset in rewinds.items():
        log.warning("rewinding %s[%d] to %d: %s", topic, partition, offset, why)
        consumer.seek(TopicPartition(topic, partition, offset))
    return len(rewinds)


class AtLeastOnce:
    """Offsets committed past the contiguous prefix whose outputs the broker acknowledged."""

    def __init__(
        self,
        consumer: Consumer,
        publisher: Publisher,
        tracker: OffsetTracker,
        *,
        max_in_flight: int = 20_000,
        drain_timeout_s: float = 30.0,
    ) -> None:
        self._consumer = consumer
        self._publisher = publisher
        self.tracker = tracker
        self._max_in_flight = max_in_flight
        self._drain_timeout_s = drain_timeout_s
        self._reread: dict[Partition, int] = {}
        self.rewinds = 0

    def begin(self, batch: Batch) -> None:
        # Registered before anything is produced: a delivery report served while producing
        # (a full queue polls) must find its offset.
        for tp, offsets in batch.offsets.items():
            self.tracker.register(tp, offsets)
        for tp, offset in batch.reread.items():
            self.tracker.fail(tp, offset)  # rewound by the next tick
        self._reread.update(batch.reread)

    def end(self, batch: Batch) -> None:
        """Nothing to do: acknowledgements arrive with the delivery reports."""

    def retry(self, batch: Batch) -> None:
        """Process ``batch`` again from its first offsets (rewound by the next tick)."""
        for tp, offsets in batch.offsets.items():
            if offsets:
                self.tracker.fail(tp, min(offsets))

    def tick(self) -> None:
        while self.tracker.pending > self._max_in_flight:
            self._publisher.poll(0.05)  # backpressure: let acknowledgements catch up
        failures = self.tracker.take_failures()
        if failures:
            reread = {tp: o for tp, o in failures.items() if self._reread.get(tp) == o}
            undelivered = {tp: o for tp, o in failures.items() if tp not in reread}
            self.rewinds += _seek(self._consumer, reread, "the schema registry was unavailable")
            self.rewinds += _seek(self._consumer, undelivered, "reprocessing undelivered outputs")
            self._reread.clear()
        self._commit(asynchronous=True)

    def drain(self) -> None:
        left = self._publisher.flush(self._drain_timeout_s)
        if left:
            log.error(
                "%d outputs unacknowledged after %.0fs; their inputs stay uncommitted",
                left,
                self._drain_timeout_s,
            )
        self._commit(asynchronous=False)

    def forget(self, partitions: Iterable[Partition]) -> None:
        self.tracker.forget(partitions)

    def committable(self, tp: Partition) -> int | None:
        return self.tracker.committable(tp)

    def _commit(self, *, asynchronous: bool) -> None:
        commits = self.tracker.commits()
        if not commits:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in commits.items()]
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Not fatal: the next commit carries a later offset; a restart reprocesses.
            log.warning("offset commit failed: %s", exc)


class ExactlyOnce:
    """Each batch's outputs and its input offsets commit in one Kafka transaction."""

    def __init__(
        self,
        consumer: Consumer,
        publisher: Publisher,
        transactions: Transactions,
        *,
        drain_timeout_s: float = 30.0,
    ) -> None:
        self._consumer = consumer
        self._publisher = publisher
        self.transactions = transactions
        self._drain_timeout_s = drain_timeout_s
        self._again = False
        self.rewinds = 0

    def begin(self, batch: Batch) -> None:
        self._again = False
        self.transactions.begin()

    def retry(self, batch: Batch) -> None:
        """Abort the batch's transaction at its end and read the batch again."""
        self._again = True

    def end(self, batch: Batch) -> None:
        if self._again:
            self.transactions.abort()
            self.rewinds += _seek(self._consumer, batch_start(batch.offsets), "batch retried")
            return
        offsets = commit_offsets(batch.offsets, batch.reread)
        try:
            self.transactions.commit(offsets, self._consumer.consumer_group_metadata())
        except TransactionAbortedError:
            starts = batch_start(batch.offsets)
            self.rewinds += _seek(self._consumer, starts, "the batch's transaction aborted")
            return
        self.rewinds += _seek(self._consumer, dict(batch.reread), "schema registry unavailable")

    def tick(self) -> None:
        """Nothing to do: every batch committed with its transaction."""

    def drain(self) -> None:
        self._publisher.flush(self._drain_timeout_s)

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Nothing is held per partition between batches."""

    def committable(self, tp: Partition) -> int | None:
        return None
