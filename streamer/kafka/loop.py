"""The consumer loop: one micro-batch at a time, at-least-once (or exactly-once).

consume → decode → enrich → assemble → score → publish; offsets are committed only once
the broker acknowledged every output (scored event or dead letter) up to them, or, in
exactly-once mode, in the same Kafka transaction as the outputs. On rebalance, revoked
partitions are drained and committed first; on stop, everything in flight is flushed and
committed before the consumer leaves the group.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from opentelemetry.trace import Link, SpanKind, Tracer, use_span

from streamer.errors import Rejection
from streamer.features.cache import FEATURE_STATUSES, FeatureCache
from streamer.features.engineering import assemble, event_columns
from streamer.kafka.batch import Batch, Decoder, sort_batch
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import Publisher
from streamer.kafka.transactions import (
    TransactionAbortedError,
    Transactions,
    batch_start,
    commit_offsets,
)
from streamer.model.scorer import DECISIONS, decide
from streamer.observability import tracing
from streamer.observability.metrics import Telemetry
from streamer.scoring.containment import StageError, run_contained
from streamer.scoring.records import ModelStamp, scored_records

log = logging.getLogger(__name__)


class Encoder(Protocol):
    def encode(self, record: dict[str, Any]) -> bytes: ...


class BatchScorer(Protocol):
    def score(self, matrix: np.ndarray) -> np.ndarray: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class LoopStats:
    """What the loop did so far (read by the progress display, metrics and health)."""

    consumed: int = 0
    scored: int = 0
    dead_lettered: int = 0
    last_heartbeat: float = field(default_factory=time.monotonic)
    assigned: set[tuple[str, int]] = field(default_factory=set)
    subscribed: bool = False


@dataclass
class Pipeline:
    """Wires the stages together; every collaborator is injected."""

    consumer: Consumer
    publisher: Publisher
    tracker: OffsetTracker
    decoder: Decoder
    encoder: Encoder
    cache: FeatureCache
    scorer: BatchScorer
    model: ModelStamp
    feature_names: Sequence[str]
    input_topic: str
    output_topic: str
    dead_letter_topic: str
    group_id: str
    max_batch_size: int = 500
    max_wait_ms: int = 50
    max_in_flight: int = 20_000
    drain_timeout_s: float = 30.0
    retry_backoff_s: float = 0.5
    clock: Callable[[], int] = now_ms
    telemetry: Telemetry = field(default_factory=Telemetry)
    tracer: Tracer | None = None  # None: tracing off, no tracing code runs at all
    transactions: Transactions | None = None  # exactly-once: one transaction per batch
    lag_interval_s: float = 2.0
    stats: LoopStats = field(default_factory=LoopStats)
    _lag_due: float = 0.0

    # -- life cycle -----------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Consume until ``should_stop()``; then drain, commit and leave the group."""
        self.consumer.subscribe(
            [self.input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.stats.subscribed = True
        try:
            while not should_stop():
                self.step()
        finally:
            self._drain()
            self.stats.subscribed = False
            self.consumer.close()  # leaves the group; revocation commits nothing new

    def step(self) -> None:
        """One loop iteration: a batch (if any), delivery reports, rewinds, commits."""
        self.stats.last_heartbeat = time.monotonic()
        messages = self.consumer.consume(self.max_batch_size, self.max_wait_ms / 1000.0)
        if self.transactions is not None:
            if messages:
                self._process_in_transaction(messages, self.transactions)
            self.publisher.poll(0)
        else:
            if messages:
                self.process(messages)
            self.publisher.poll(0)
            while self.tracker.pending > self.max_in_flight:
                self.publisher.poll(0.05)  # backpressure: let acknowledgements catch up
            self._rewind_failed()
            self._commit(asynchronous=True)
        self.telemetry.latency.observe(np.asarray(self.publisher.take_latencies_ms()) / 1000.0)
        if time.monotonic() >= self._lag_due:
            self._lag_due = time.monotonic() + self.lag_interval_s
            self._update_lag()

    # -- one micro-batch ------------------------------------------------------------------

    def _process_in_transaction(self, messages: list[Message], transactions: Transactions) -> None:
        """Exactly-once: the batch's outputs and its offsets commit together, or not at all."""
        transactions.begin()
        batch = self.process(messages)
        try:
            transactions.commit(
                commit_offsets(batch.offsets, batch.reread), self.consumer.consumer_group_metadata()
            )
            rewind = dict(batch.reread)
        except TransactionAbortedError:
            rewind = batch_start(batch.offsets)  # nothing of the batch is visible: redo it
        for (topic, partition), offset in rewind.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))

    def process(self, messages: list[Message]) -> Batch:
        """Score one micro-batch, inside a ``process <topic>`` span when tracing is on."""
        self.telemetry.batch_size.observe((len(messages),))
        if self.tracer is None:
            return self._process(messages, None, None)
        contexts = [tracing.upstream_context(m) for m in messages]
        span = self.tracer.start_span(
            f"process {self.input_topic}",
            kind=SpanKind.CONSUMER,
            links=tracing.batch_links(messages, contexts),
            attributes=tracing.process_attributes(self.input_topic, self.group_id, len(messages)),
        )
        with use_span(span, end_on_exit=True):
            return self._process(messages, contexts, Link(span.get_span_context()))

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        """Time a stage for the metrics, and give it a child span when tracing is on."""
        started = time.perf_counter()
        with self.tracer.start_as_current_span(name) if self.tracer else nullcontext():
            yield
        self.telemetry.stage(name, time.perf_counter() - started)

    def _process(
        self, messages: list[Message], contexts: list[Any] | None, batch_link: Link | None
    ) -> Batch:
        received = self.clock()
        with self._stage("decode"):
            batch = sort_batch(messages, self.decoder, received, contexts)
        for error in batch.errors:
            self._consumer_error(error)
        if self.transactions is None:  # exactly-once commits with the transaction instead
            for tp, offsets in batch.offsets.items():
                self.tracker.register(tp, offsets)
            for tp, offset in batch.reread.items():
                self.tracker.fail(tp, offset)  # rewound by the next step
        for msg, rejection in batch.rejected:
            self._dead_letter(msg, rejection)
        for tp, offset in batch.reread.items():
            log.warning("schema registry unavailable; %s[%d] will be re-read from %d", *tp, offset)
        if batch.reread:
            time.sleep(self.retry_backoff_s)
        self.stats.consumed += batch.consumed
        if batch.events:
            self._score_and_publish(batch, received, batch_link)
        return batch

    def _score_and_publish(self, batch: Batch, received: int, batch_link: Link | None) -> None:
        events = batch.events
        rows, scores, statuses, failures = run_contained(
            lambda subset: self._features_and_scores([events[i] for i in subset.tolist()]),
            np.arange(len(events)),
        )
        for row, failure in failures:
            log.warning("event isolated from its batch at stage %s: %s", failure.stage, failure)
            self._dead_letter(
                batch.messages[row],
                Rejection(type(failure.error).__name__, str(failure), failure.stage),
            )
        if len(failures) == len(events):
            return
        if failures:
            batch = batch.valid_subset(rows.tolist())
        decisions = decide(scores, self.model.review_threshold, self.model.decline_threshold)
        self._count(scores, decisions, statuses)
        with self._stage("publish"):
            records = scored_records(
                batch.events,
                scores=scores,
                decisions=decisions,
                statuses=statuses,
                partitions=[tp[1] for tp, _ in batch.positions],
                offsets=[offset for _, offset in batch.positions],
                model=self.model,
                received_ms=received,
                scored_ms=self.clock(),
                publish_ms=self.clock(),
            )
            self._send_all(batch, records, batch_link)
        self.stats.scored += len(records)

    def _send_all(
        self, batch: Batch, records: list[dict[str, Any]], batch_link: Link | None
    ) -> None:
        """Queue every scored record; its trace headers continue its input's trace."""
        send, encode, topic, tracer = (
            self.publisher.send,
            self.encoder.encode,
            self.output_topic,
            self.tracer,
        )
        contexts = batch.contexts or [None] * len(records)
        for msg, (source, offset), upstream, record in zip(
            batch.messages, batch.positions, contexts, records, strict=True
        ):
            headers = (
                tracing.send_headers(tracer, topic, upstream, batch_link)
                if tracer is not None and upstream is not None
                else tracing.trace_headers(msg)
            )
            send(
                topic,
                record["card_id"],
                encode(record),
                source,
                offset,
                headers=headers,
                event_time=record["event_time"],
            )

    def _count(self, scores: np.ndarray, decisions: np.ndarray, statuses: np.ndarray) -> None:
        """Per-batch counts for the metrics (bincount, not a loop over events)."""
        t = self.telemetry
        t.scores(scores)
        for code, n in enumerate(np.bincount(decisions, minlength=len(DECISIONS)).tolist()):
            t.decisions[DECISIONS[code]] += n
        for code, n in enumerate(np.bincount(statuses, minlength=len(FEATURE_STATUSES)).tolist()):
            t.feature_status[FEATURE_STATUSES[code]] += n

    def _features_and_scores(self, events: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Enrich, assemble and score a (sub-)batch; failures are tagged with their stage."""
        with self._stage("enrich"):
            try:
                features = self.cache.fetch(
                    [e["card_id"] for e in events], [e["merchant_id"] for e in events]
                )
                columns = event_columns(events)
                matrix = assemble(columns, features.card, features.merchant, self.feature_names)
            except Exception as exc:
                raise StageError("enrich", exc) from exc
        with self._stage("score"):
            try:
                scores = self.scorer.score(matrix)
            except Exception as exc:
                raise StageError("score", exc) from exc
        return scores, features.status()

    def _dead_letter(self, msg: Message, rejection: Rejection) -> None:
        self.publisher.send_dead_letter(self.dead_letter_topic, msg, rejection, self.group_id)
        self.stats.dead_lettered += 1
        self.telemetry.dead_letters[rejection.stage, rejection.error_class] += 1

    def _update_lag(self) -> None:
        """Messages between each assigned partition's end and what is committable."""
        assigned = [TopicPartition(t, p) for t, p in self.stats.assigned]
        if not assigned:
            self.telemetry.lag.clear()
            return
        try:
            positions = self.consumer.position(assigned)
        except KafkaException:
            return
        lag: dict[tuple[str, int], int] = {}
        for tp in positions:
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            done = self.tracker.committable((tp.topic, tp.partition))
            at = done if done is not None else tp.offset
            if high >= 0 and at >= 0:
                lag[tp.topic, tp.partition] = max(high - at, 0)
        self.telemetry.lag = lag

    def _consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer error: %s", error)

    # -- offsets --------------------------------------------------------------------------

    def _commit(self, *, asynchronous: bool) -> None:
        commits = self.tracker.commits()
        if not commits:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in commits.items()]
        try:
            if asynchronous:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Not fatal: the next commit carries a later offset; a restart reprocesses.
            log.warning("offset commit failed: %s", exc)

    def _rewind_failed(self) -> None:
        for (topic, partition), offset in self.tracker.take_failures().items():
            log.warning(
                "rewinding %s[%d] to %d to reprocess undelivered outputs", topic, partition, offset
            )
            self.consumer.seek(TopicPartition(topic, partition, offset))

    def _drain(self) -> None:
        left = self.publisher.flush(self.drain_timeout_s)
        if left:
            log.error(
                "%d outputs unacknowledged after %.0fs; their inputs stay uncommitted",
                left,
                self.drain_timeout_s,
            )
        self._commit(asynchronous=False)

    # -- rebalance callbacks (called from inside consume) ----------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.assigned.update((p.topic, p.partition) for p in partitions)
        self._lag_due = 0.0  # report the new partitions' lag at once
        log.info("assigned %s", _names(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drain()
        revoked = [(p.topic, p.partition) for p in partitions]
        self.tracker.forget(revoked)
        self.stats.assigned.difference_update(revoked)
        log.info("revoked %s", _names(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = [(p.topic, p.partition) for p in partitions]
        self.tracker.forget(lost)  # another member owns them now: committing would be wrong
        self.stats.assigned.difference_update(lost)
        log.warning("lost %s", _names(partitions))


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"
