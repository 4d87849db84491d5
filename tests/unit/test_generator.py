"""``streamer produce``'s generator: every event sent once, keyed by card, with a trace
context, through a full local queue; what was not delivered is counted, not hidden."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError

from streamer.dev.generator import produce_synthetic
from streamer.errors import DependencyError


class JsonEncoder:
    def encode(self, record: dict[str, Any]) -> bytes:
        return json.dumps(record, sort_keys=True, default=str).encode()


class QueueProducer:
    """Raises ``BufferError`` on every ``full_every``-th produce (a full local queue); fails
    the deliveries of the first ``failing`` events on flush."""

    def __init__(self, full_every: int = 0, failing: int = 0) -> None:
        self.full_every, self.failing, self.calls = full_every, failing, 0
        self.sent: list[tuple[str, bytes, str, list[tuple[str, bytes]]]] = []
        self.callbacks: list[Callable[[Any, Any], None]] = []
        self.polls_while_full = 0

    def produce(
        self, topic: str, value: bytes, key: str, on_delivery: Any, headers: Any = None
    ) -> None:
        self.calls += 1
        if self.full_every and self.calls % self.full_every == 0:
            self.polls_while_full += 1
            raise BufferError("full")
        self.sent.append((topic, value, key, headers))
        self.callbacks.append(on_delivery)

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        for i, callback in enumerate(self.callbacks):
            callback(KafkaError(KafkaError._MSG_TIMED_OUT) if i < self.failing else None, None)
        return 0


def test_every_event_is_sent_once_keyed_by_card_with_a_traceparent_through_a_full_queue() -> None:
    producer = QueueProducer(full_every=7)
    sent = produce_synthetic(producer, JsonEncoder(), topic="in", count=2500, seed=3)  # type: ignore[arg-type]
    assert sent == 2500
    assert len(producer.sent) == 2500
    assert producer.polls_while_full > 0
    ids = [json.loads(value)["transaction_id"] for _, value, _, _ in producer.sent]
    assert len(set(ids)) == 2500
    for topic, value, key, headers in producer.sent:
        assert topic == "in"
        assert key == json.loads(value)["card_id"]
        [(name, trace)] = headers
        assert name == "traceparent"
        assert trace.startswith(b"00-")
        assert trace.endswith(b"-01")


def test_undelivered_events_are_counted_in_one_line() -> None:
    producer = QueueProducer(failing=3)
    with pytest.raises(DependencyError, match=r"^3 of 10 events were not delivered to in: "):
        produce_synthetic(producer, JsonEncoder(), topic="in", count=10)  # type: ignore[arg-type]
