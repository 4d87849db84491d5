"""Publishing: scored events and dead letters, asynchronously; the broker's answers drive
commits.

Every output queued is remembered (a scored event by its bytes, a dead letter with its
callback) until the broker answered for it, and then marks exactly its input done in the
``OffsetTracker``, or failed. The stream's producer reports failures only
(``delivery.report.only.error``, ``STREAM_PRODUCER``): a report per acknowledged output
cost more CPU than scoring the event. Success is then known in bulk: when the producer
holds nothing (``len(producer) == 0``: no message queued or in flight and no report left
to serve) after its reports were served, every output still remembered was acknowledged
(``_settle``). That moment comes before each batch is produced (the previous batch was
acknowledged while this one was scored), at each poll and flush. Success reports, where a
producer sends them, acknowledge their output at once, so either configuration is exact.

A failure is either retriable (a timeout, a broker restarting: the input is reprocessed,
its partition rewound) or permanent for that record (too large, invalid, refused by the
topic's policy), which reprocessing cannot fix. A permanent refusal never blocks a
partition: a refused scored event is replaced by a dead letter of its input saying why; a
refused dead letter is re-sent cut down (``dead_letters.truncated``), smaller each time;
when even the smallest is refused for ``give_up_after_s``, ``fatal`` is set and the loop
stops with one line naming the topic and the broker's reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from operator import itemgetter
from typing import cast

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streamer.errors import Rejection, StreamerError
from streamer.kafka.dead_letters import dead_letter_headers, truncated
from streamer.kafka.headers import Headers
from streamer.kafka.offsets import OffsetTracker, TopicPartition
from streamer.observability.observer import Observer

log = logging.getLogger(__name__)

ProducerHeaders = list[tuple[str, str | bytes | None]] | None
PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.POLICY_VIOLATION,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError._INVALID_ARG,
        KafkaError._BAD_MSG,
    }
)
"""Errors that reprocessing the same record cannot fix."""
STREAM_PRODUCER = {"delivery.report.only.error": True}
"""The stream's producer settings beyond ``producer_config``: failure reports only."""
SMALLEST_LETTER = 1024
SMALLEST_RETRIES = 8  # sends of the smallest letter before the partition is rewound


class DeadLetterRefusedError(StreamerError):
    """Even a cut-down dead letter is refused: stopping beats losing or looping (exit 4)."""

    exit_code = 4


@dataclass(frozen=True)
class DeadLetterTopic:
    """Where dead letters go, and the consumer group they are written for."""

    topic: str
    group_id: str


@dataclass(frozen=True, slots=True)
class _Output:
    """What a delivery report needs to know about the record it reports on."""

    source: TopicPartition
    offset: int
    event_time: int = 0
    origin: Message | None = None  # the input of a scored event
    rejection: Rejection | None = None  # set for a dead letter
    budget: int = 0  # a cut-down dead letter: the size it was cut to
    attempts: int = 0  # sends of a smallest-size dead letter so far


_Scored = tuple[TopicPartition, int, int, Message]  # source, offset, event time, input


@dataclass(slots=True)
class _Queued:
    """The scored events of one ``send_many`` call, row by row; ``answered`` rows are known
    failed or went the careful path (``_Output``), the others are waiting."""

    values: Sequence[bytes]
    positions: Sequence[tuple[TopicPartition, int]]
    event_times: Sequence[int]
    origins: Sequence[Message]
    answered: set[int] = field(default_factory=set)

    def waiting(self) -> Sequence[int]:
        rows = range(len(self.values))
        return rows if not self.answered else [r for r in rows if r not in self.answered]


class _Pending:
    """Scored events queued and not yet answered for, batch by batch (no work per event).

    A failure report names its output only by its bytes, which name its input (source
    partition and offset, times); on the first one since the last settle, the batches are
    indexed by bytes (failures are rare). The same bytes twice (one input scored twice
    within a millisecond, after a rewind) are the same input, so a report may take either.
    """

    def __init__(self) -> None:
        self._batches: list[_Queued] = []
        self._index: dict[bytes, list[tuple[_Queued, int]]] | None = None
        self._waiting = 0

    def __len__(self) -> int:
        return self._waiting

    def add(self, queued: _Queued) -> None:
        self._batches.append(queued)
        self._waiting += len(queued.values) - len(queued.answered)
        if self._index is not None:
            self._index_rows(queued)

    def answer(self, queued: _Queued, row: int) -> None:
        """``row`` of ``queued`` is no longer waiting (its failure is being handled)."""
        if row not in queued.answered:
            queued.answered.add(row)
            self._waiting -= 1

    def take(self, value: bytes | None) -> _Scored | None:
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

    def take_all(self) -> list[_Queued]:
        """Every batch (and nothing waits any more)."""
        taken, self._batches, self._index, self._waiting = self._batches, [], None, 0
        return taken

    def _index_rows(self, queued: _Queued) -> None:
        assert self._index is not None
        for row, value in enumerate(queued.values):
            self._index.setdefault(value, []).append((queued, row))


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
        self._tracker = tracker
        self._observer = observer or Observer()
        self._dead_letters = dead_letters
        self._max_bytes = max_bytes
        self._give_up_after_s = give_up_after_s
        self._refused_since: float | None = None
        self.delivered = 0
        self.failed = 0
        self.refused = 0
        self.fatal: StreamerError | None = None
        self._latencies: list[int] = []
        self._pending = _Pending()
        self._careful: dict[int, _Output] = {}  # by id: queued by ``_produce``, unanswered

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

        The hot path: every output shares one delivery callback (a ``functools.partial``
        per output cost more than the rest of its delivery report), which finds what it
        reports on by the output's bytes (``_Pending``); the slow path (a full queue, a
        refusal) only when it happens. First, what the broker acknowledged since the last
        call is settled, if all of it was (``poll``).
        """
        if not len(keys) == len(values) == len(positions) == len(event_times) == len(origins):
            raise ValueError("send_many takes aligned sequences")
        self.poll(0)
        queued = _Queued(values, positions, event_times, origins)
        self._pending.add(queued)  # first: a report served while producing must find it
        produce, delivered = self._producer.produce, self._on_scored
        for row, (key, value, output_headers) in enumerate(zip(keys, values, headers, strict=True)):
            try:
                produce(
                    topic,
                    value,
                    key,
                    on_delivery=delivered,
                    headers=cast(ProducerHeaders, output_headers),  # list is invariant
                )
            except (BufferError, KafkaException):  # full queue or refused: the careful path
                self._pending.answer(queued, row)
                (source, offset), event_time = positions[row], event_times[row]
                output = _Output(source, offset, event_time, origins[row])
                self._produce(topic, key, value, output_headers, 0, output)

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
        output = _Output(
            source, msg.offset() or 0, origin=msg, rejection=rejection, budget=budget,
            attempts=attempts,
        )  # fmt: skip
        self._produce(target.topic, key, value, headers, max(timestamp, 0), output)

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports (waiting up to ``timeout``); settle when all is answered."""
        served = int(self._producer.poll(timeout))
        if (self._pending or self._careful) and len(self._producer) == 0:
            self._settle()
        return served

    def flush(self, timeout: float) -> int:
        """Wait for outstanding deliveries; returns how many are still unacknowledged."""
        left = int(self._producer.flush(timeout))
        if left == 0:
            self._settle()
        return left

    @property
    def unreported(self) -> int:
        """Outputs queued whose acknowledgement or failure is not known yet."""
        return len(self._pending) + len(self._careful)

    def take_latencies_ms(self) -> list[int]:
        """Event time to acknowledgement of the outputs acknowledged since the last call."""
        taken, self._latencies = self._latencies, []
        return taken

    def _produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        headers: Headers | None,
        timestamp: int,
        output: _Output,
    ) -> None:
        callback = partial(self._answered, output)
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    on_delivery=callback,
                    headers=cast(ProducerHeaders, headers),  # list is invariant; bytes are fine
                    timestamp=timestamp,  # 0: now, librdkafka's default
                )
                self._careful[id(output)] = output
                return
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:  # refused before queueing (too large, invalid)
                error = exc.args[0] if exc.args else KafkaError(KafkaError._INVALID_ARG)
                self._delivered(output, error, None)
                return

    def _settle(self) -> None:
        """The producer holds nothing and every report was served: each output still
        unanswered was acknowledged (a failure would have been reported)."""
        batches, careful = self._pending.take_all(), self._careful
        self._careful = {}
        now = time.time_ns() // 1_000_000
        for queued in batches:
            rows = queued.waiting()
            if not rows:
                continue
            positions = queued.positions
            if len(rows) < len(positions):
                positions = list(map(positions.__getitem__, rows))
            for tp, run in groupby(positions, key=itemgetter(0)):  # a partition's runs
                self._tracker.ack_all(tp, list(map(itemgetter(1), run)))
            times = np.asarray(queued.event_times, dtype=np.int64)[np.asarray(rows)]
            self._latencies += (now - times[times != 0]).tolist()
            self.delivered += len(rows)
            self._refused_since = None
        for output in careful.values():
            self._delivered(output, None, None)

    def _answered(self, output: _Output, err: KafkaError | None, msg: Message | None) -> None:
        """The delivery report of an output queued by ``_produce``."""
        if self._careful.pop(id(output), None) is not None:
            self._delivered(output, err, msg)

    def _on_scored(self, err: KafkaError | None, msg: Message) -> None:
        """The delivery report of a scored event queued by ``send_many``."""
        found = self._pending.take(msg.value())
        if found is None:  # cannot happen: every such output was registered when queued
            log.error("delivery report for an output never queued: %s", err and err.str())
            return
        source, offset, event_time, origin = found
        if err is None:
            self._acknowledged(source, offset, event_time)
            return
        self._delivered(_Output(source, offset, event_time, origin), err, msg)

    def _acknowledged(self, source: TopicPartition, offset: int, event_time: int) -> None:
        """The broker has an output: its input is done (and its latency known)."""
        self.delivered += 1
        self._refused_since = None
        self._tracker.ack(source, offset)
        if event_time:
            self._latencies.append(time.time_ns() // 1_000_000 - event_time)

    def _delivered(self, output: _Output, err: KafkaError | None, msg: Message | None) -> None:
        if err is None:
            self._acknowledged(output.source, output.offset, output.event_time)
            if output.rejection is not None:
                self._observer.dead_lettered(output.rejection)
            return
        if err.code() in PERMANENT and output.origin is not None:
            self._refused(output, err)
            return
        self.failed += 1
        self._tracker.fail(output.source, output.offset)
        log.error(
            "delivery failed, will reprocess %s[%d]@%d: %s",
            *output.source,
            output.offset,
            err.str(),
        )

    def _refused(self, output: _Output, err: KafkaError) -> None:
        """A permanent refusal: dead-letter the input, or cut the dead letter down."""
        assert output.origin is not None
        self.refused += 1
        if output.rejection is None:
            log.warning("scored event refused (%s); dead-lettering its input", err.str())
            reason = Rejection("OutputRefused", f"scored event refused: {err.str()}", "publish")
            self.send_dead_letter(output.origin, reason)
            return
        budget = output.budget // 4 if output.budget else self._max_bytes
        if budget < SMALLEST_LETTER and output.attempts < SMALLEST_RETRIES:
            # The broker limits a record *batch*: a letter that fits alone can be refused
            # beside others. Send the smallest again, alone, after a short pause.
            time.sleep(0.05 * (output.attempts + 1))
            self.send_dead_letter(
                output.origin, output.rejection, SMALLEST_LETTER, output.attempts + 1
            )
            return
        if budget >= SMALLEST_LETTER:
            self.send_dead_letter(output.origin, output.rejection, budget)
            return
        now = time.monotonic()
        self._refused_since = self._refused_since or now
        topic = self._dead_letters.topic if self._dead_letters else "?"
        if now - self._refused_since >= self._give_up_after_s:
            self.fatal = DeadLetterRefusedError(
                f"the dead-letter topic {topic!r} refuses even a {SMALLEST_LETTER}-byte dead "
                f"letter ({err.str()}); check the topic (max.message.bytes, policies, ACLs)"
            )
        self.failed += 1
        self._tracker.fail(output.source, output.offset)  # retried after the rewind
