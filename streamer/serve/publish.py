"""``--publish``: every decision the API gave, also on the scored topic, for audit.

Same records, encoder, key (card id) and topic as the stream, so a fraud service or an
auditor reads API decisions like stream decisions. The authorization answer never waits
for the broker: records are produced asynchronously after each batch and delivery
failures are counted (``streamer_delivery_failures_total``), not retried into the request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streamer.clients import Clients
from streamer.errors import ConfigError
from streamer.kafka.loop import Encoder
from streamer.scoring.kernel import Scored
from streamer.service.assembly import encoder

log = logging.getLogger(__name__)
TraceHeaders = list[tuple[str, str | bytes | None]] | None


class AuditPublisher:
    """Produces the ScoredEvent records of each batch to the output topic."""

    def __init__(self, producer: Producer, encoder: Encoder, topic: str) -> None:
        self._producer = producer
        self._encoder = encoder
        self._topic = topic
        self.sent = 0
        self.failed = 0
        self.refused = 0

    @classmethod
    def from_settings(cls, clients: Clients) -> AuditPublisher:
        settings = clients.settings
        if not settings.output_topic:
            raise ConfigError("--publish needs STREAMER_OUTPUT_TOPIC (the scored topic)")
        registry = clients.schema_registry()
        return cls(clients.producer(), encoder(settings, registry), settings.output_topic)

    def publish(self, scored: Scored, headers: Sequence[TraceHeaders]) -> None:
        """Produce ``scored``'s records (``headers`` aligned with them); never blocks long."""
        for record, trace in zip(scored.records, headers, strict=True):
            value = self._encoder.encode(record)
            try:
                self._produce(record["card_id"], value, trace)
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: serve delivery reports
                try:
                    self._produce(record["card_id"], value, trace)
                except BufferError:
                    self.failed += 1
            except KafkaException as exc:  # too large or invalid: refused for good
                self.refused += 1
                log.warning("scored record refused by the producer: %s", exc)
        self._producer.poll(0)

    def close(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for outstanding deliveries."""
        left = self._producer.flush(timeout_s)
        if left:
            log.warning("%d audit records not delivered before shutdown", left)
            self.failed += left

    def _produce(self, key: str, value: bytes, trace: TraceHeaders) -> None:
        self._producer.produce(
            self._topic, value, key.encode(), headers=trace, on_delivery=self._delivered
        )

    def _delivered(self, err: KafkaError | None, msg: Message | None) -> None:
        if err is None:
            self.sent += 1
        else:
            self.failed += 1
            log.warning("audit record not delivered: %s", err.str())
