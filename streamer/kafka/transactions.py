"""Exactly-once: micro-batches' outputs and their input offsets in one Kafka transaction.

``begin`` → one or more batches are scored and published as usual → ``commit(offsets)``
sends the offsets to the transaction (with the consumer group's metadata, so a zombie from
an older group generation is fenced, KIP-447) and commits it. Downstream ``read_committed``
consumers then see every scored event exactly once, also across crashes.

A commit costs round trips to the transaction coordinator whatever the batch's size, so a
transaction spans several batches (``Span``), bounded by time and by count: the bounds
trade how soon outputs become visible for how often that fixed cost is paid.

Errors, as librdkafka classifies them: retriable → retry; abortable → abort, and the caller
rewinds the transaction's partitions to where it started; anything else (fenced) is fatal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from streamer.errors import DependencyError, StreamerError

log = logging.getLogger(__name__)

Offsets = Mapping[tuple[str, int], int]


class TransactionAbortedError(Exception):
    """The transaction was aborted: reprocess its batches from their first offsets."""


class FatalTransactionError(StreamerError):
    """The producer can do no transaction again (librdkafka's fatal errors), most often
    because it was fenced: an instance with the same transactional id started, or, with
    the group's metadata, a newer member owns the partitions (a zombie, KIP-447). The open
    transaction is aborted by the broker: nothing of it becomes visible."""


def _fatal(error: KafkaError) -> FatalTransactionError:
    why = (
        "another instance with the same STREAMER_TRANSACTIONAL_ID, or a newer member of the "
        "consumer group, took over"
        if error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED)
        else "the Kafka producer failed for good"
    )
    return FatalTransactionError(
        f"exactly-once stopped: {why} ({error.str()}); the open transaction is aborted, "
        "nothing of it is visible, and its inputs are read again by whoever owns them"
    )


def commit_offsets(
    consumed: Mapping[tuple[str, int], list[int]], reread: Offsets
) -> dict[tuple[str, int], int]:
    """The offsets to commit for a processed batch: one past the last message of each
    partition, or the offset a partition must be re-read from."""
    out = {tp: max(offsets) + 1 for tp, offsets in consumed.items() if offsets}
    out.update(reread)
    return out


def batch_start(consumed: Mapping[tuple[str, int], list[int]]) -> dict[tuple[str, int], int]:
    """Where each partition of a batch started: where to rewind after an abort."""
    return {tp: min(offsets) for tp, offsets in consumed.items() if offsets}


@dataclass
class Span:
    """What one open transaction holds: the offsets to commit with it, where each of its
    partitions started (where to rewind if it aborts) and how many batches it spans."""

    started: float  # monotonic seconds
    batches: int = 0
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    starts: dict[tuple[str, int], int] = field(default_factory=dict)
    reread: dict[tuple[str, int], int] = field(default_factory=dict)  # seek after the commit

    def add(self, consumed: Mapping[tuple[str, int], list[int]], reread: Offsets) -> None:
        """One more batch: its offsets supersede earlier ones (a partition is read in
        order), its starts do not (the transaction's first batch is where to rewind to)."""
        self.batches += 1
        self.offsets.update(commit_offsets(consumed, reread))
        for tp, start in batch_start(consumed).items():
            self.starts.setdefault(tp, start)
        for tp, offset in reread.items():
            self.starts.setdefault(tp, offset)
        self.reread.update(reread)

    def due(self, now: float, max_s: float, max_batches: int) -> bool:
        """Time to commit: the time bound passed or the count bound is reached."""
        return self.batches >= max_batches or now - self.started >= max_s


class Transactions:
    """The transactional side of one producer (``transactional.id`` set in its config)."""

    def __init__(self, producer: Producer, timeout_s: float = 30.0, retries: int = 5) -> None:
        self._producer = producer
        self._timeout = timeout_s
        self._retries = retries
        self.committed = 0
        self.aborted = 0

    def init(self) -> None:
        """Register the transactional id with the broker (fences older instances of it)."""
        try:
            self._producer.init_transactions(self._timeout)
        except KafkaException as exc:
            raise DependencyError(f"cannot initialise Kafka transactions: {_error(exc)}") from None

    def begin(self) -> None:
        self._producer.begin_transaction()

    def commit(self, offsets: Offsets, group_metadata: Any) -> None:
        """Add ``offsets`` to the open transaction and commit it, or abort and raise."""
        partitions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            if partitions:
                self._retry(
                    lambda: self._producer.send_offsets_to_transaction(
                        partitions, group_metadata, self._timeout
                    )
                )
            self._retry(lambda: self._producer.commit_transaction(self._timeout))
        except KafkaException as exc:
            error = _kafka_error(exc)
            if error is not None and error.txn_requires_abort():
                self._abort(error)
                raise TransactionAbortedError(str(error)) from None
            if error is not None and error.fatal():
                raise _fatal(error) from None
            raise
        self.committed += 1

    def _retry(self, call: Any) -> None:
        for attempt in range(self._retries + 1):
            try:
                call()
                return
            except KafkaException as exc:
                error = _kafka_error(exc)
                if error is None or not error.retriable() or attempt == self._retries:
                    raise
                log.warning("transaction step failed, retrying: %s", error)
                time.sleep(min(0.1 * 2**attempt, 2.0))

    def abort(self) -> None:
        """Abort the open transaction: nothing of it becomes visible."""
        try:
            self._producer.abort_transaction(self._timeout)
        except KafkaException as exc:
            error = _kafka_error(exc)
            if error is not None and error.fatal():
                raise _fatal(error) from None
            raise
        self.aborted += 1

    def _abort(self, error: KafkaError) -> None:
        log.warning("aborting the batch's transaction: %s", error)
        self.abort()


def _kafka_error(exc: KafkaException) -> KafkaError | None:
    error = exc.args[0] if exc.args else None
    return error if isinstance(error, KafkaError) else None


def _error(exc: KafkaException) -> str:
    error = _kafka_error(exc)
    return error.str() if error is not None else str(exc)
