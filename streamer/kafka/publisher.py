"""Publishing: scored events and dead letters, asynchronously; the broker's answers drive
commits.

Every output queued is remembered until the broker answered for it, and then marks
exactly its input done in the ``OffsetTracker``, or failed (``delivery.Ledger``). Scored
events take the hot path: one shared delivery callback, remembered batch by batch
(``pending``). Dead letters, and scored events that could not be queued at once, take the
careful path (``careful``). A permanent refusal is answered with a dead letter, cut down
if need be (``refusals``).

The stream's producer reports failures only (``delivery.report.only.error``,
``STREAM_PRODUCER``): a report per acknowledged output cost more CPU than scoring the
event. Success is then known in bulk, by settling: when the producer holds nothing
(``len(producer) == 0``: no message queued or in flight and no report left to serve) after
its reports were served, every output still remembered was acknowledged. That moment comes
before each batch is produced (the previous batch was acknowledged while this one was
scored), at each poll and flush. Success reports, where a producer sends them, acknowledge
their output at once, so either configuration is exact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streamer.errors import Rejection, StreamerError
from streamer.kafka.careful import CarefulSender, ProducerHeaders
from streamer.kafka.config import STREAM_PRODUCER
from streamer.kafka.dead_letters import dead_letter_headers, truncated
from streamer.kafka.delivery import Ledger, Output, now_ms
from streamer.kafka.headers import Headers
from streamer.kafka.offsets import OffsetTracker, TopicPartition
from streamer.kafka.pending import PendingBatches, QueuedBatch
from streamer.kafka.refusals import (
    PERMANENT,
    DeadLetterRefusedError,
    GiveUpClock,
    next_letter,
    refused_for_good,
)
from streamer.observability.observer import Observer

__all__ = ["STREAM_PRODUCER", "DeadLetterRefusedError", "DeadLetterTopic", "Publisher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetterTopic:
    """Where dead letters go, and the consumer group they are written for."""

    topic: str
    group_id: str


class Publisher:
    """Wraps one ``Producer``; acknowledgements and failures go to the offset tracker."""

    def __init__(
        self,
        producer: Producer,
        tracker: OffsetTracker,
        observer: Observer | None = None,
        *,
        dead_letters: DeadLetterTopic | None = None,
        max_bytes: int = 1_000_000,
        give_up_after_s: float = 60.0,
    ) -> None:
        self._producer = producer
        self._observer = observer or Observer()
        self._dead_letters = dead_letters
        self._max_bytes = max_bytes
        self._ledger = Ledger(tracker)
        self._pending = PendingBatches()
        self._careful = CarefulSender(producer, self._delivered)
        self._give_up = GiveUpClock(give_up_after_s)
        self.fatal: StreamerError | None = None
        self.settled_at = time.monotonic()  # when every output was last known answered

    @property
    def delivered(self) -> int:
        """Outputs the broker acknowledged."""
        return self._ledger.delivered

    @property
    def failed(self) -> int:
        """Outputs that failed for now (their inputs are reprocessed)."""
        return self._ledger.failed

    @property
    def refused(self) -> int:
        """Outputs the broker refused for good (each answered with a dead letter)."""
        return self._ledger.refused

    @property
    def unreported(self) -> int:
        """Outputs queued whose acknowledgement or failure is not known yet."""
        return len(self._pending) + len(self._careful)

    def send_many(
        self,
        topic: str,
        keys: Sequence[str],
        values: Sequence[bytes],
        positions: Sequence[tuple[TopicPartition, int]],
        headers: Sequence[Headers | None],
        event_times: Sequence[int],
        origins: Sequence[Message],
    ) -> None:
        """Queue a batch of scored events (aligned sequences); blocks (serving delivery
        reports) while the queue is full. ``event_times`` (epoch ms) give the end-to-end
        latency on acknowledgement; an ``origins`` input is dead-lettered if the broker
        refuses its output for good.

        The hot path: every output shares one delivery callback, which finds what it
        reports on by the output's bytes (``PendingBatches``); the careful path (a full
        queue, a refusal) only when it happens. First, what the broker acknowledged since
        the last call is settled, if all of it was (``poll``).
        """
        if not len(keys) == len(values) == len(positions) == len(event_times) == len(origins):
            raise ValueError("send_many takes aligned sequences")
        self.poll(0)
        queued = QueuedBatch(values, positions, event_times, origins)
        self._pending.add(queued)  # first: a report served while producing must find it
        produce, delivered = self._producer.produce, self._on_scored
        given = cast(Sequence[ProducerHeaders], headers)  # list is invariant; once, not a row
        rows = range(len(keys))
        for row, key, value, output_headers in zip(rows, keys, values, given, strict=True):
            # By position, in the client's order: topic, value, key, partition (-1: the
            # partitioner's), on_delivery, callback (its alias), timestamp (0: now),
            # headers. Parsing keywords costs the client a third of the call.
            try:
                produce(topic, value, key, -1, delivered, None, 0, output_headers)
            except (BufferError, KafkaException):  # full queue or refused: the careful path
                self._pending.answer(queued, row)
                (source, offset), event_time = positions[row], event_times[row]
                output = Output(source, offset, event_time, origins[row])
                self._careful.produce(topic, key, value, headers[row], 0, output)

    def send_dead_letter(
        self, msg: Message, rejection: Rejection, budget: int = 0, attempts: int = 0
    ) -> None:
        """Queue ``msg`` with why it failed (cut to ``budget`` bytes when given)."""
        target = self._dead_letters
        if target is None:
            raise RuntimeError("this publisher has no dead-letter topic")
        _, timestamp = msg.timestamp()
        key, value = msg.key(), msg.value()
        headers = dead_letter_headers(msg, rejection, target.group_id)
        if budget:
            key, value, headers = truncated(key, value, headers, budget)
        source = (msg.topic() or "", msg.partition() or 0)
        output = Output(
            source, msg.offset() or 0, origin=msg, rejection=rejection, budget=budget,
            attempts=attempts,
        )  # fmt: skip
        self._careful.produce(target.topic, key, value, headers, max(timestamp, 0), output)

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports (waiting up to ``timeout``); settle when all is answered."""
        served = int(self._producer.poll(timeout))
        if self.unreported and len(self._producer) == 0:
            self._settle()
        return served

    def flush(self, timeout: float) -> int:
        """Wait for outstanding deliveries; returns how many are still unacknowledged."""
        left = int(self._producer.flush(timeout))
        if left == 0:
            self._settle()
        return left

    def take_latencies_ms(self) -> list[int]:
        """Event time to acknowledgement of the outputs acknowledged since the last call."""
        return self._ledger.take_latencies_ms()

    def _settle(self) -> None:
        """The producer holds nothing and every report was served: each output still
        unanswered was acknowledged (a failure would have been reported)."""
        self.settled_at = time.monotonic()
        batches, careful = self._pending.take_all(), self._careful.take_all()
        now = now_ms()
        for queued in batches:
            self._ledger.settle(queued, now)
        for output in careful:
            self._delivered(output, None, None)

    def _on_scored(self, err: KafkaError | None, msg: Message) -> None:
        """The delivery report of a scored event queued by ``send_many``."""
        found = self._pending.take(msg.value())
        if found is None:  # cannot happen: every such output was registered when queued
            log.error("delivery report for an output never queued: %s", err and err.str())
            return
        source, offset, event_time, origin = found
        if err is None:
            self._ledger.acknowledged(source, offset, event_time)
            return
        self._delivered(Output(source, offset, event_time, origin), err, msg)

    def _delivered(self, output: Output, err: KafkaError | None, msg: Message | None) -> None:
        """The broker's answer for ``output``: acknowledged, refused for good, or failed."""
        if err is None:
            self._ledger.acknowledged(output.source, output.offset, output.event_time)
            if output.rejection is not None:
                self._observer.dead_lettered(output.rejection)
        elif err.code() in PERMANENT and output.origin is not None:
            self._refused(output, output.origin, err)
        else:
            self._ledger.fail(output.source, output.offset)
            log.error(
                "delivery failed, will reprocess %s[%d]@%d: %s",
                *output.source,
                output.offset,
                err.str(),
            )

    def _refused(self, output: Output, origin: Message, err: KafkaError) -> None:
        """A permanent refusal: dead-letter the input, or cut the dead letter down; when
        nothing smaller is left, retry after a rewind (and give up in time)."""
        self._ledger.refused += 1
        letter = next_letter(output, err.str(), self._max_bytes)
        if letter is not None:
            if output.rejection is None:
                log.warning("scored event refused (%s); dead-lettering its input", err.str())
            if letter.pause_s:
                time.sleep(letter.pause_s)
            self.send_dead_letter(origin, letter.rejection, letter.budget, letter.attempts)
            return
        if self._give_up.refused(self._ledger.delivered):
            topic = self._dead_letters.topic if self._dead_letters else "?"
            self.fatal = refused_for_good(topic, err.str())
        self._ledger.fail(output.source, output.offset)  # retried after the rewind
