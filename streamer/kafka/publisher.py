"""Publishing: scored events and dead letters, asynchronously; delivery reports drive commits.

Each output carries the input's topic-partition and offset in its delivery callback, so a
broker acknowledgement marks exactly that input done in the ``OffsetTracker``, and a failed
delivery marks it for reprocessing. Dead letters are built by ``dead_letters``.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import cast

from confluent_kafka import KafkaError, Message, Producer

from streamer.errors import Rejection
from streamer.kafka.dead_letters import dead_letter_headers
from streamer.kafka.headers import Headers
from streamer.kafka.offsets import OffsetTracker, TopicPartition
from streamer.observability.observer import Observer

log = logging.getLogger(__name__)

ProducerHeaders = list[tuple[str, str | bytes | None]] | None


class Publisher:
    """Wraps one ``Producer``; acknowledgements and failures go to the offset tracker."""

    def __init__(
        self, producer: Producer, tracker: OffsetTracker, observer: Observer | None = None
    ) -> None:
        self._producer = producer
        self._tracker = tracker
        self._observer = observer or Observer()
        self.delivered = 0
        self.failed = 0
        self._latencies: list[int] = []

    def send(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        source: TopicPartition,
        offset: int,
        headers: Headers | None = None,
        timestamp: int = 0,
        event_time: int = 0,
        rejection: Rejection | None = None,
    ) -> None:
        """Queue one record; blocks (serving delivery reports) while the local queue is full.

        With ``event_time`` (epoch ms) the end-to-end latency is recorded on acknowledgement;
        a dead letter (``rejection``) is reported to the observer when acknowledged.
        """
        callback = partial(self._delivered, source, offset, event_time, rejection)
        # headers=None and timestamp=0 (now) are librdkafka's own defaults.
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    on_delivery=callback,
                    headers=cast(ProducerHeaders, headers),  # list is invariant; bytes are fine
                    timestamp=timestamp,
                )
                return
            except BufferError:
                self._producer.poll(0.05)

    def send_dead_letter(
        self, topic: str, msg: Message, rejection: Rejection, group_id: str
    ) -> None:
        _, timestamp = msg.timestamp()
        self.send(
            topic,
            msg.key(),
            msg.value(),
            (msg.topic() or "", msg.partition() or 0),
            msg.offset() or 0,
            headers=dead_letter_headers(msg, rejection, group_id),
            timestamp=max(timestamp, 0),
            rejection=rejection,
        )

    def poll(self, timeout: float = 0.0) -> int:
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float) -> int:
        """Wait for outstanding deliveries; returns how many are still unacknowledged."""
        return int(self._producer.flush(timeout))

    def take_latencies_ms(self) -> list[int]:
        """Event time to acknowledgement of the outputs acknowledged since the last call."""
        taken, self._latencies = self._latencies, []
        return taken

    def _delivered(
        self,
        source: TopicPartition,
        offset: int,
        event_time: int,
        rejection: Rejection | None,
        err: KafkaError | None,
        msg: Message,
    ) -> None:
        if err is None:
            self.delivered += 1
            self._tracker.ack(source, offset)
            if event_time:
                self._latencies.append(time.time_ns() // 1_000_000 - event_time)
            if rejection is not None:
                self._observer.dead_lettered(rejection)
            return
        self.failed += 1
        self._tracker.fail(source, offset)
        log.error(
            "delivery to %s failed, will reprocess %s@%d: %s", msg.topic(), source, offset, err
        )
