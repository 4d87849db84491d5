"""Commit strategies: at-least-once through the consumer, exactly-once through a transaction.

The loop calls one ``CommitStrategy`` around every batch and never asks which guarantee
it runs with (the shape of quix-streams' ``Checkpoint``):

- ``begin(batch)``: before any output of the batch is produced;
- ``end(batch)``: after every output of the batch was queued;
- ``tick()``: once per loop step, after delivery reports were served (input or not);
- ``drain()``: before partitions are given up or the process stops;
- ``forget(partitions)``: partitions revoked (after ``drain``) or lost.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from streamer.kafka.batch import Batch
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import Publisher
from streamer.kafka.transactions import (
    FatalTransactionError,
    Span,
    TransactionAbortedError,
    Transactions,
    batch_start,
)
from streamer.observability.observer import Observer

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
    """Offsets committed past the contiguous prefix whose outputs the broker acknowledged.

    While streaming, at most one commit per ``commit_interval_s``: adaptive batching makes
    a batch of every event or two when traffic is light, and a commit request per batch
    would load the broker more than the stream does (a rebalance or a stop commits all at
    once, whatever the interval)."""

    def __init__(
        self,
        consumer: Consumer,
        publisher: Publisher,
        tracker: OffsetTracker,
        *,
        max_in_flight: int = 20_000,
        drain_timeout_s: float = 30.0,
        commit_interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._publisher = publisher
        self.tracker = tracker
        self._max_in_flight = max_in_flight
        self._drain_timeout_s = drain_timeout_s
        self._commit_interval_s = commit_interval_s
        self._clock = clock
        self._committed_at = -math.inf
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
        now = self._clock()
        if now - self._committed_at >= self._commit_interval_s and self._commit(asynchronous=True):
            self._committed_at = now

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

    def _commit(self, *, asynchronous: bool) -> bool:
        """Commit what advanced; False when nothing had."""
        commits = self.tracker.commits()
        if not commits:
            return False
        offsets = [TopicPartition(t, p, o) for (t, p), o in commits.items()]
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Not fatal: the next commit carries a later offset; a restart reprocesses.
            log.warning("offset commit failed: %s", exc)
        return True


class ExactlyOnce:
    """Batches' outputs and input offsets commit together in Kafka transactions, each
    spanning batches until ``max_s`` passed since it began or ``max_batches`` joined it.

    A transaction also commits when partitions are given up or the process stops
    (``drain``), when the time bound passes on an idle stream (``tick``) and at once after
    a batch with partitions to re-read (their seek must follow the commit). A retried
    batch, or a transaction the broker aborts, rewinds every partition of the
    transaction to where the transaction started; lost partitions abort it.
    """

    def __init__(
        self,
        consumer: Consumer,
        publisher: Publisher,
        transactions: Transactions,
        *,
        drain_timeout_s: float = 30.0,
        max_s: float = 0.25,
        max_batches: int = 100,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._publisher = publisher
        self.transactions = transactions
        self._drain_timeout_s = drain_timeout_s
        self._max_s = max_s
        self._max_batches = max_batches
        self._observer = observer or Observer()
        self._clock = clock
        self._open: Span | None = None
        self._again = False
        self._in_batch = False  # between begin and end: the open transaction holds part of it
        self._fatal = False  # the producer can do nothing more (fenced): drain nothing
        self.rewinds = 0

    def begin(self, batch: Batch) -> None:
        self._again, self._in_batch = False, True
        if self._open is None:
            self.transactions.begin()
            self._open = Span(started=self._clock())

    def retry(self, batch: Batch) -> None:
        """Abort the transaction at the batch's end and read all of it again."""
        self._again = True

    def end(self, batch: Batch) -> None:
        self._in_batch = False
        span = self._open
        if span is None:
            return
        if self._again:
            self._abort(span, {**batch_start(batch.offsets), **span.starts}, "batch retried")
            return
        span.add(batch.offsets, batch.reread)
        if batch.reread or span.due(self._clock(), self._max_s, self._max_batches):
            self._commit(span)

    def tick(self) -> None:
        """Commit the open transaction once its time bound passed, input or not."""
        span = self._open
        if span is not None and span.due(self._clock(), self._max_s, self._max_batches):
            self._commit(span)

    def drain(self) -> None:
        """Commit the open transaction, unless a batch failed half way (an exception left
        ``end`` uncalled): some of its outputs are in the transaction and none of its
        offsets, so the whole transaction aborts and the next owner reads it all again."""
        if self._fatal:  # a fenced producer's flush fails too; the broker aborted its work
            return
        if self._open is not None and self._in_batch:
            self._abort(self._open, {}, "a batch failed half way")
        elif self._open is not None:
            self._commit(self._open)
        self._publisher.flush(self._drain_timeout_s)

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Partitions lost to another member: their offsets must not commit, so the open
        transaction (if any) aborts and the partitions kept are read again from its start.
        (Revoked partitions were committed by the ``drain`` before.)"""
        span = self._open
        if span is None:
            return
        gone = set(partitions)
        kept = {tp: o for tp, o in span.starts.items() if tp not in gone}
        self._abort(span, kept, "partitions lost")

    def committable(self, tp: Partition) -> int | None:
        return None

    def _commit(self, span: Span) -> None:
        self._open = None
        started = time.perf_counter()
        try:
            self.transactions.commit(span.offsets, self._consumer.consumer_group_metadata())
        except FatalTransactionError:
            self._fatal = True
            raise
        except TransactionAbortedError:
            self._observer.transaction("aborted", time.perf_counter() - started, span.batches)
            self.rewinds += _seek(self._consumer, span.starts, "the transaction aborted")
            return
        self._observer.transaction("committed", time.perf_counter() - started, span.batches)
        self.rewinds += _seek(self._consumer, span.reread, "schema registry unavailable")

    def _abort(self, span: Span, rewind: dict[Partition, int], why: str) -> None:
        self._open = None
        log.warning("aborting a transaction of %d batches: %s", span.batches, why)
        started = time.perf_counter()
        try:
            self.transactions.abort()
        except FatalTransactionError:
            self._fatal = True
            raise
        self._observer.transaction("aborted", time.perf_counter() - started, span.batches)
        self.rewinds += _seek(self._consumer, rewind, why)
