"""The monitor's consumer loop: scored events and labels in, the join state in Redis out.

One consumer, in the monitor's own group, reads the scored topic and the labels topic.
Each batch is decoded, written to the join state (``state.JoinState``), and only then are
its offsets committed: at least once, and every write is idempotent, so a kill -9 replays
the uncommitted tail without counting anything twice. A message that does not decode (or
a label without a transaction id) is counted, logged in one line and skipped: it is still
on its topic, and the monitor never writes anywhere but Redis. A Redis outage is retried
with backoff for ``redis_retry_s``; then the process stops (exit 3) and its restart
replays from the last commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from streamer.codec.wire import Decoder
from streamer.errors import DependencyError, Rejection
from streamer.features.redis_client import REDIS_ERRORS
from streamer.monitor.gauges import MonitorMetrics
from streamer.monitor.interner import Interner
from streamer.monitor.labels import Label, to_label
from streamer.monitor.records import (
    ScoredRow,
    feature_names_and_values,
    pack_features,
    pack_label,
    pack_scored,
)
from streamer.monitor.state import Applied, JoinState, LabelWrite, ScoredWrite

log = logging.getLogger(__name__)


def scored_write(record: dict[str, Any], interner: Interner) -> ScoredWrite | Rejection:
    """What the monitor keeps of one decoded ScoredEvent (versions interned)."""
    if not record["transaction_id"]:
        return Rejection("EmptyTransactionId", "scored event without a transaction_id")
    name = record["model_name"]
    shadow_version = record.get("shadow_model_version")
    row = ScoredRow(
        transaction_id=record["transaction_id"],
        event_time_ms=int(record["event_time"]),
        amount_minor=int(record["amount_minor"]),
        currency=record["currency"],
        score=float(record["score"]),
        decision=record["decision"],
        version_id=interner.id("version", f"{name}@{record['model_version']}"),
        shadow_score=record.get("shadow_score"),
        shadow_decision=record.get("shadow_decision"),
        shadow_version_id=interner.id("version", f"{name}@{shadow_version}")
        if shadow_version
        else 0,
    )
    features = b""
    logged = record.get("features")
    if logged:
        names, values = feature_names_and_values(logged)
        features = pack_features(interner.feature_set(names), values)
    return ScoredWrite(row.transaction_id, pack_scored(row), row.hour, row.version_id, features)


def label_write(label: Label, interner: Interner) -> LabelWrite:
    source = interner.id("source", label.source)
    return LabelWrite(label.transaction_id, pack_label(label.label_time_ms, label.code, source))


@dataclass
class MonitorLoop:
    """Consume, decode, join, commit; gauges recomputed every ``refresh_s`` meanwhile."""

    consumer: Consumer
    state: JoinState
    scored_decoder: Decoder
    label_decoder: Decoder
    scored_topic: str
    labels_topic: str
    metrics: MonitorMetrics
    window_ms: int
    refresh_s: float = 60.0
    batch_size: int = 1000
    redis_retry_s: float = 60.0
    now_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    heartbeat: float = field(default_factory=time.monotonic)

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Until ``should_stop()``: one batch at a time; commits before returning. The
        gauges are recomputed on a thread of their own, so reading a large window never
        stalls consumption."""
        self.consumer.subscribe([self.scored_topic, self.labels_topic])
        stopped = threading.Event()
        refresher = threading.Thread(
            target=self._refresh_every, args=(stopped,), name="monitor-gauges", daemon=True
        )
        refresher.start()
        try:
            while not should_stop():
                self.heartbeat = time.monotonic()
                messages = self.consumer.consume(self.batch_size, 0.5)
                if messages:
                    self.process(messages)
        finally:
            stopped.set()
            self.consumer.close()

    def _refresh_every(self, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                self.metrics.refresh(self.state, self.now_ms(), self.window_ms)
            except REDIS_ERRORS as exc:  # the consumer loop decides when Redis is gone for good
                log.warning("gauges not recomputed: Redis failed (%s)", type(exc).__name__)
            stopped.wait(self.refresh_s)

    def process(self, messages: Sequence[Message]) -> None:
        """Decode and apply one batch, then commit its offsets."""
        ends = self._retrying(lambda: self._apply(messages))
        if not ends:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # partitions moved away: their new owner replays
            log.warning("commit failed (%s); the batch will be replayed, harmlessly", exc)

    def _apply(self, messages: Sequence[Message]) -> dict[tuple[str, int], int]:
        scored: list[ScoredWrite] = []
        labels: list[LabelWrite] = []
        ends: dict[tuple[str, int], int] = {}
        for msg in messages:
            if msg.error():
                log.warning("consume error: %s", msg.error())
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is None or partition is None or offset is None:
                continue
            ends[(topic, partition)] = offset + 1
            if topic == self.scored_topic:
                self._add(scored, msg, self.scored_decoder, "scored", self._scored_of)
            else:
                self._add(labels, msg, self.label_decoder, "labels", self._label_of)
        self._count("scored", self.state.add_scored(scored))
        self._count("labels", self.state.add_labels(labels))
        return ends

    def _scored_of(self, record: dict[str, Any]) -> ScoredWrite | Rejection:
        return scored_write(record, self.state.interner)

    def _label_of(self, record: dict[str, Any]) -> LabelWrite | Rejection:
        label = to_label(record)
        return label if isinstance(label, Rejection) else label_write(label, self.state.interner)

    def _add(
        self,
        into: list[Any],
        msg: Message,
        decoder: Decoder,
        topic: str,
        convert: Callable[[dict[str, Any]], Any],
    ) -> None:
        decoded = decoder.decode(msg.value())
        item = decoded if isinstance(decoded, Rejection) else convert(decoded)
        if isinstance(item, Rejection):
            self.metrics.messages.labels(topic, "rejected").inc()
            log.warning(
                "skipped %s message %s[%d]@%d: %s: %s",
                topic, msg.topic(), msg.partition(), msg.offset(), item.error_class, item.message,
            )  # fmt: skip
            return
        into.append(item)

    def _count(self, topic: str, applied: Applied) -> None:
        for result in ("joined", "pending", "duplicate"):
            n = getattr(applied, result)
            if n:
                self.metrics.messages.labels(topic, result).inc(n)

    def _retrying(self, work: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + self.redis_retry_s
        delay = 0.1
        while True:
            try:
                return work()
            except REDIS_ERRORS as exc:
                if time.monotonic() + delay > deadline:
                    raise DependencyError(
                        f"Redis failed for {self.redis_retry_s:.0f}s ({type(exc).__name__}): "
                        "the monitor stops; its restart replays from the last commit"
                    ) from exc
                log.warning("Redis failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
