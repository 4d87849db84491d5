"""The consumer loop: one micro-batch at a time.

consume → decode → score (the kernel: validate, enrich, assemble, model, decide) → publish
→ commit. When offsets are committed is the ``CommitStrategy``'s business (at-least-once
or exactly-once); what gets measured and traced is the ``Observer``'s. On rebalance,
revoked partitions are drained and committed first; on stop, everything in flight is
flushed and committed before the consumer leaves the group.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streamer.codec.columns import Column
from streamer.errors import ConfigError, Rejection
from streamer.kafka.batch import Batch, Decoder, sort_batch
from streamer.kafka.batching import ConsumePlan, LatencyTargetSizer, consume_plan
from streamer.kafka.commit import CommitStrategy
from streamer.kafka.intake import take
from streamer.kafka.lag import LagMonitor
from streamer.kafka.membership import Membership
from streamer.kafka.publisher import Publisher
from streamer.observability.observer import Observer
from streamer.observability.tracing import trace_headers_of
from streamer.scoring.kernel import Scored, ScoringKernel

log = logging.getLogger(__name__)


class Encoder(Protocol):
    def encode(self, record: dict[str, Any]) -> bytes: ...
    def encode_many(self, records: list[dict[str, Any]]) -> list[bytes]: ...
    def encode_columns(self, columns: Mapping[str, Column], n: int) -> list[bytes]: ...


@dataclass(frozen=True)
class Topics:
    """Where the loop reads and writes, and the consumer group it reads as."""

    input: str
    output: str
    dead_letter: str
    group_id: str


@dataclass
class LoopStats:
    """What the loop did so far (read by the progress line, metrics and health).

    ``dead_lettered`` counts dead letters the broker acknowledged (see ``StatsObserver``).
    """

    consumed: int = 0
    scored: int = 0
    dead_lettered: int = 0
    last_heartbeat: float = field(default_factory=time.monotonic)
    assigned: set[tuple[str, int]] = field(default_factory=set)
    subscribed: bool = False


class StatsObserver(Observer):
    """Counts acknowledged dead letters into ``LoopStats``."""

    def __init__(self, stats: LoopStats) -> None:
        self._stats = stats

    def dead_lettered(self, rejection: Rejection) -> None:
        self._stats.dead_lettered += 1


@dataclass
class StreamLoop:
    """Wires consumer, decoder, kernel, publisher and commit strategy; all injected."""

    consumer: Consumer
    publisher: Publisher
    decoder: Decoder
    encoder: Encoder
    kernel: ScoringKernel
    commits: CommitStrategy
    topics: Topics
    observer: Observer = field(default_factory=Observer)
    stats: LoopStats = field(default_factory=LoopStats)
    max_batch_size: int = 500
    max_wait_ms: int = 0  # 0: adaptive batching (``kafka.batching``); > 0: a fill wait
    idle_wait_s: float = 0.05  # nothing waiting: how long one step blocks for a message
    retry_backoff_s: float = 0.5
    lag_interval_s: float = 2.0
    settle_after_s: float = 0.005  # while outputs are in flight: see ``kafka.intake``
    settle_every_s: float = 0.05  # outputs in flight this long are waited for: ``_settle``
    sizer: LatencyTargetSizer | None = None  # STREAMER_LATENCY_TARGET_MS: sizes batches
    redis_gate: Callable[[], bool] | None = None  # STREAMER_REDIS_REQUIRED: is Redis usable?
    membership: Membership | None = None  # joined early by ``run``; else made at ``subscribe``
    _paused: bool = False
    _lag: LagMonitor | None = None
    _resume_at: float = 0.0
    _settled_at: float = field(default_factory=time.monotonic)

    def subscribe(self) -> None:
        """Follow the consumer group membership, asking to join if nobody has yet.
        librdkafka joins in its own threads, so what the caller does next (warming the
        model) overlaps the join; the partitions are taken in the first ``consume``,
        inside ``run``."""
        if self.membership is None:
            self.membership = Membership(self.consumer, self.topics.input)
        self.membership.follow(self)
        self.membership.join()

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Consume until ``should_stop()``; then drain, commit and leave the group."""
        self.subscribe()
        self.stats.subscribed = True
        try:
            while not should_stop():
                self.step()
        finally:
            self.commits.drain()
            self.stats.subscribed = False
            self.consumer.close()  # leaves the group; revocation commits nothing new

    def step(self) -> None:
        """One loop iteration: a batch (if any), delivery reports, rewinds, commits."""
        if self.publisher.fatal is not None:
            raise self.publisher.fatal
        self.stats.last_heartbeat = now = time.monotonic()
        if now < self._resume_at:  # backing off after a registry outage: serve reports only
            self.publisher.poll(min(self._resume_at - now, self.idle_wait_s))
        else:
            if self.redis_gate is not None:
                self._follow_redis(self.redis_gate())
            plan = self._plan()
            messages = take(self.consumer, self.publisher, plan, self.settle_after_s)
            if messages:
                started = time.perf_counter()
                self.process(messages)
                if self.sizer is not None:
                    self.sizer.report(
                        len(messages),
                        time.perf_counter() - started,
                        full=len(messages) >= plan.size,
                    )
            self.publisher.poll(0)
            self._settle(now)
        self.commits.tick()
        latencies = self.publisher.take_latencies_ms()
        if latencies:
            self.observer.delivered(np.asarray(latencies, dtype=np.int64))
        lag = self._lag_monitor().due()
        if lag is not None:
            self.observer.lag(lag)

    def _settle(self, now: float) -> None:
        """Outputs in flight for ``settle_every_s`` are waited for, ``settle_after_s`` at
        most (a short flush: a slow broker must not stall the stream; the next try comes
        ``settle_every_s`` later). Acknowledgement is read from the producer running empty
        (``Publisher``); a steady stream of small batches keeps something in flight at
        every poll, so without this no offset would be committed, nor latency taken,
        until traffic paused. What is in flight was queued after the publisher last
        settled (``Publisher.settled_at``: a drain settles at nearly every batch, as the
        previous batch is acknowledged while the next is scored), so only a longer wait
        than that is waited for: a drain is not held up by a flush every ``settle_every_s``."""
        if not self.publisher.unreported:
            self._settled_at = now
        elif now - max(self._settled_at, self.publisher.settled_at) >= self.settle_every_s:
            self.publisher.flush(self.settle_after_s)
            self._settled_at = time.monotonic()

    def _plan(self) -> ConsumePlan:
        capped = None if self.sizer is None else self.sizer.bounds()
        return consume_plan(
            self.max_batch_size, self.max_wait_ms / 1000.0, self.idle_wait_s, capped
        )

    def process(self, messages: list[Message]) -> Batch:
        """Decode, score and publish one micro-batch, and hand it to the commit strategy."""
        with self.observer.batch(messages):
            with self.observer.stage("decode"):
                batch = sort_batch(messages, self.decoder)
            for error in batch.errors:
                _consumer_error(error)
            self.stats.consumed += batch.consumed
            self.commits.begin(batch)
            for msg, rejection in batch.rejected:
                self._dead_letter(msg, rejection)
            if batch.reread:
                for (topic, partition), offset in batch.reread.items():
                    log.warning(
                        "schema registry unavailable; %s[%d] will be re-read from %d",
                        topic,
                        partition,
                        offset,
                    )
                self._resume_at = time.monotonic() + self.retry_backoff_s
            if batch.events:
                self._score_and_publish(batch)
            self.commits.end(batch)
        return batch

    def _follow_redis(self, available: bool) -> None:
        """Redis required: pause the assigned partitions while it is down, resume after."""
        if available == (not self._paused):
            return
        partitions = [TopicPartition(t, p) for t, p in self.stats.assigned]
        if available:
            self.consumer.resume(partitions)
            log.info("feature cache available again: consuming")
        else:
            self.consumer.pause(partitions)
            log.warning("feature cache unavailable and required: consumption paused")
        self._paused = not available

    def _score_and_publish(self, batch: Batch) -> None:
        sources = [(tp[1], offset) for tp, offset in batch.positions]
        result = self.kernel.score(batch.events, sources)
        if self.redis_gate is not None and result.degraded:  # never publish defaults
            self.commits.retry(batch)
            self._follow_redis(False)
            return
        for row, rejection in result.rejected:
            self._dead_letter(batch.messages[row], rejection)
        if result.rows:
            with self.observer.stage("publish"):
                self._send_all(batch, result)
            self.stats.scored += len(result.rows)

    def _send_all(self, batch: Batch, result: Scored) -> None:
        """Queue every scored record; its trace headers continue its input's trace."""
        rows, columns, positions = result.rows, result.columns, batch.positions
        messages = [batch.messages[r] for r in rows]
        headers = self.observer.output_headers(messages) or trace_headers_of(messages)
        self.publisher.send_many(
            self.topics.output,
            columns["card_id"],
            self.encoder.encode_columns(columns, len(rows)),
            [positions[r] for r in rows],
            headers,
            columns["event_time"],
            messages,
        )

    def _dead_letter(self, msg: Message, rejection: Rejection) -> None:
        self.publisher.send_dead_letter(msg, rejection)

    def _lag_monitor(self) -> LagMonitor:
        if self._lag is None:
            self._lag = LagMonitor(
                self.consumer, self.commits.committable, self.stats.assigned, self.lag_interval_s
            )
        return self._lag

    # -- rebalances (``Membership`` calls these from inside consume) ---------------------

    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.assigned.update((p.topic, p.partition) for p in partitions)
        self._lag_monitor().soon()  # report the new partitions' lag at once
        log.info("assigned %s", _names(partitions))

    def revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.commits.drain()
        revoked = [(p.topic, p.partition) for p in partitions]
        self.commits.forget(revoked)
        self.stats.assigned.difference_update(revoked)
        log.info("revoked %s", _names(partitions))

    def lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = [(p.topic, p.partition) for p in partitions]
        self.commits.forget(lost)  # another member owns them now: committing would be wrong
        self.stats.assigned.difference_update(lost)
        log.warning("lost %s", _names(partitions))


def _consumer_error(error: KafkaError) -> None:
    if error.code() == KafkaError._PARTITION_EOF:
        return
    # librdkafka reports a fatal consumer error as code _FATAL with fatal() False: without
    # this check a fenced consumer would loop forever, consuming nothing.
    if error.fatal() or error.code() == KafkaError._FATAL:
        if "group.instance.id" in error.str():
            raise ConfigError(
                "another instance joined the consumer group with the same group.instance.id "
                "and fenced this one; give each instance its own STREAMER_GROUP_INSTANCE_ID "
                "(default: the host name)"
            )
        raise KafkaException(error)
    log.warning("consumer error: %s", error)


def _names(partitions: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"
