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
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streamer.codec.columns import Column
from streamer.errors import ConfigError, Rejection
from streamer.kafka.batch import Batch, Decoder, sort_batch
from streamer.kafka.batching import ConsumePlan, LatencyTargetSizer, consume_plan
from streamer.kafka.commit import CommitStrategy
from streamer.kafka.headers import Headers
from streamer.kafka.intake import take
from streamer.kafka.lag import LagMonitor
from streamer.kafka.membership import Membership
from streamer.kafka.publisher import Publisher
from streamer.observability.observer import Observer
from streamer.observability.tracing import trace_headers_of
from streamer.scoring.kernel import Scored, Scoring, ScoringKernel

log = logging.getLogger(__name__)

PENDING = 2  # full batches a backlog keeps in flight: each explained while the next are scored
OutputHeaders = Sequence[Headers | None]  # a batch's outputs' trace headers, row by row


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
class Pending:
    """A batch decoded and scored, not yet published nor handed to the commit strategy;
    ``headers``: its outputs' trace headers, made while its trace was current."""

    batch: Batch
    scoring: Scoring | None
    headers: OutputHeaders | None = None
    carried: object = None  # ``Observer.carry``: its trace, current again when completed


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
    _pending: deque[Pending] = field(default_factory=deque)  # full batches, oldest first

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
            self.finish_pending()
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
            self.finish_pending()
            self.publisher.poll(min(self._resume_at - now, self.idle_wait_s))
        else:
            if self.redis_gate is not None:
                self._follow_redis(self.redis_gate())
            plan = self._plan()
            messages = take(self.consumer, self.publisher, plan, self.settle_after_s)
            if messages:
                started, full = time.perf_counter(), len(messages) >= plan.size
                self.process(messages, overlap=full)
                if self.sizer is not None:
                    self.sizer.report(len(messages), time.perf_counter() - started, full=full)
            else:
                self.finish_pending()
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
        """Wait a little for outputs in flight too long (``settled``)."""
        every, most = self.settle_every_s, self.settle_after_s
        self._settled_at = settled(self.publisher, self._settled_at, now, every, most)

    def _plan(self) -> ConsumePlan:
        capped = None if self.sizer is None else self.sizer.bounds()
        plan = consume_plan(
            self.max_batch_size, self.max_wait_ms / 1000.0, self.idle_wait_s, capped
        )
        if self._pending:  # their output must not wait for more input
            return ConsumePlan(plan.size, 0.0, 0.0)
        return plan

    def process(self, messages: list[Message], *, overlap: bool = False) -> Batch:
        """Decode, score and publish one micro-batch, and hand it to the commit strategy.

        With ``overlap`` (a full batch: more are waiting) its reason codes are still being
        found in the kernel's explainer thread when this returns; it is completed (published,
        handed to the commit strategy) once ``PENDING`` batches after it are scored, or when
        none comes (``finish_pending``): in order, and before any rebalance or stop commits."""
        with self.observer.batch(messages):
            with self.observer.stage("decode"):
                batch = sort_batch(messages, self.decoder)
            for error in batch.errors:
                _consumer_error(error)
            self.stats.consumed += batch.consumed
            scoring = None
            if batch.events:
                sources = [(tp[1], offset) for tp, offset in batch.positions]
                meanwhile = partial(self.finish_pending, keep=PENDING - 1) if overlap else None
                scoring = self.kernel.start(  # the batches before complete while Redis reads
                    batch.events, sources, overlap=overlap, meanwhile=meanwhile
                )
            pending = Pending(batch, scoring)
            if overlap and scoring is not None and scoring.rows and not scoring.degraded:
                pending.headers = _headers(self.observer, batch, scoring.rows)  # its trace's
                pending.carried = self.observer.carry()
                self._pending.append(pending)
            else:
                self.finish_pending()
                self._complete(pending)
        return batch

    def finish_pending(self, keep: int = 0) -> None:
        """Complete pending batches, oldest first, until ``keep`` are left (``process``)."""
        while len(self._pending) > keep:
            pending = self._pending.popleft()
            with self.observer.resume(pending.carried):  # its stages: in its own trace
                self._complete(pending)

    def _complete(self, pending: Pending) -> None:
        batch = pending.batch
        self.commits.begin(batch)
        for msg, rejection in batch.rejected:
            self.publisher.send_dead_letter(msg, rejection)
        if batch.reread:
            _log_reread(batch.reread)
            self._resume_at = time.monotonic() + self.retry_backoff_s
        if pending.scoring is not None:
            self._publish(batch, pending.scoring.result(), pending.headers)
        self.commits.end(batch)

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

    def _publish(self, batch: Batch, result: Scored, headers: OutputHeaders | None) -> None:
        if self.redis_gate is not None and result.degraded:  # never publish defaults
            self.commits.retry(batch)
            self._follow_redis(False)
            return
        for row, rejection in result.rejected:
            self.publisher.send_dead_letter(batch.messages[row], rejection)
        if result.rows:
            with self.observer.stage("publish"):
                headers = headers or _headers(self.observer, batch, result.rows)
                _send_all(self.publisher, self.topics.output, self.encoder, batch, result, headers)
            self.stats.scored += len(result.rows)

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
        self.finish_pending()
        self.commits.drain()
        revoked = [(p.topic, p.partition) for p in partitions]
        self.commits.forget(revoked)
        self.stats.assigned.difference_update(revoked)
        log.info("revoked %s", _names(partitions))

    def lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = [(p.topic, p.partition) for p in partitions]
        self.finish_pending()  # as if it had completed before the loss was noticed
        self.commits.forget(lost)  # another member owns them now: committing would be wrong
        self.stats.assigned.difference_update(lost)
        log.warning("lost %s", _names(partitions))


def settled(
    publisher: Publisher, settled_at: float, now: float, every: float, most: float
) -> float:
    """When outputs were last settled, after waiting for them if need be.

    Outputs in flight for ``every`` seconds are waited for, ``most`` seconds at most (a
    short flush: a slow broker must not stall the stream; the next try comes ``every``
    later). Acknowledgement is read from the producer running empty (``Publisher``); a
    steady stream of small batches keeps something in flight at every poll, so without
    this no offset would be committed, nor latency taken, until traffic paused. What is in
    flight was queued after the publisher last settled (``Publisher.settled_at``: a drain
    settles at nearly every batch, as the previous batch is acknowledged while the next is
    scored), so only a longer wait than that is waited for: a drain is not held up by a
    flush every ``every`` seconds."""
    if not publisher.unreported:
        return now
    if now - max(settled_at, publisher.settled_at) >= every:
        publisher.flush(most)
        return time.monotonic()
    return settled_at


def _headers(observer: Observer, batch: Batch, rows: list[int]) -> OutputHeaders:
    """The outputs' trace headers: each continues its input's trace (inside the batch's
    ``observer.batch``, where its trace is current)."""
    messages = [batch.messages[r] for r in rows]
    return observer.output_headers(messages) or trace_headers_of(messages)


def _send_all(
    publisher: Publisher,
    topic: str,
    encoder: Encoder,
    batch: Batch,
    result: Scored,
    headers: OutputHeaders,
) -> None:
    """Queue every scored record with its trace ``headers``."""
    rows, columns, positions = result.rows, result.columns, batch.positions
    publisher.send_many(
        topic,
        columns["card_id"],
        encoder.encode_columns(columns, len(rows)),
        [positions[r] for r in rows],
        headers,
        columns["event_time"],
        [batch.messages[r] for r in rows],
    )


def _log_reread(reread: Mapping[tuple[str, int], int]) -> None:
    for (topic, partition), offset in reread.items():
        log.warning(
            "schema registry unavailable; %s[%d] will be re-read from %d", topic, partition, offset
        )


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
