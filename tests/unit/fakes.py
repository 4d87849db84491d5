"""In-memory stand-ins for the consumer, producer and Redis client, and a pipeline built on them."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, Message, TopicPartition
from fastavro import schemaless_writer

from streamer.codec.schemas import scored_schema, transaction_schema, without_logical_types
from streamer.codec.wire import make_decoder, make_encoder
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import FeatureCache
from streamer.features.layout import card_key, merchant_key, pack
from streamer.kafka.loop import Pipeline
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import Publisher
from streamer.model.registry import load_model
from streamer.model.scorer import Scorer
from streamer.scoring.records import ModelStamp

MODELS = Path(__file__).resolve().parents[2] / "models"
TOPIC = "tx"


class FakeProducer:
    """Queues produced records; ``poll``/``flush`` deliver them (or fail chosen ones)."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, bytes | None, Any, Callable[..., None], Any]] = []
        self.delivered: list[tuple[str, bytes | None, Any, Any]] = []
        self.fail_values: set[bytes] = set()

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: Any,
        on_delivery: Callable[..., None],
        headers: Any = None,
        timestamp: int = 0,
    ) -> None:
        self.queued.append((topic, value, key, on_delivery, headers))

    def poll(self, timeout: float = 0) -> int:
        queued, self.queued = self.queued, []
        for topic, value, key, callback, headers in queued:
            msg = Message(
                topic=topic,
                partition=0,
                offset=len(self.delivered),
                key=key,
                value=value,
                headers=headers,
            )
            if value in self.fail_values:
                callback(KafkaError(KafkaError._MSG_TIMED_OUT), msg)
            else:
                self.delivered.append((topic, value, key, headers))
                callback(None, msg)
        return len(queued)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


class FakeConsumer:
    def __init__(self, batches: list[list[Message]]) -> None:
        self.batches = batches
        self.commits: list[list[TopicPartition]] = []
        self.seeks: list[TopicPartition] = []

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        return self.batches.pop(0) if self.batches else []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.commits.append(offsets)

    def seek(self, partition: TopicPartition) -> None:
        self.seeks.append(partition)


class FakeRedis:
    def __init__(self, data: dict[str, bytes]) -> None:
        self.data = data

    def mget(self, keys: list[str]) -> list[bytes | None]:
        return [self.data.get(k) for k in keys]


def base_event(**overrides: Any) -> dict[str, Any]:
    """A valid TransactionEvent dict (every schema field), with ``overrides`` applied."""
    return {
        "transaction_id": "00000000-0000-4000-8000-000000000000",
        "card_id": "card-000001",
        "merchant_id": "merchant-00001",
        "event_time": 1_764_000_000_000,
        "amount_minor": 12_345,
        "currency": "EUR",
        "mcc": 5411,
        "merchant_country": "DE",
        "channel": "POS",
        "entry_mode": "CHIP",
        "card_present": True,
        "three_ds": None,
        "terminal_id": None,
        "acquirer_id": None,
        "device_id": None,
        "ip_address": None,
        "billing_country": None,
        "is_recurring": False,
        **overrides,
    }


def _event(i: int, **overrides: Any) -> dict[str, Any]:
    return base_event(
        **{
            "transaction_id": f"tx-{i}",
            "card_id": f"card-{i % 3}",
            "merchant_id": "m-1",
            "event_time": 1_764_000_000_000 + i,
            "amount_minor": 1000 + i,
            **overrides,
        }
    )


def _raw(event: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, without_logical_types(transaction_schema()), event)
    return buf.getvalue()


def _msg(offset: int, value: bytes | None, partition: int = 0, headers: Any = None) -> Message:
    return Message(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        key=b"k",
        value=value,
        headers=headers,
        timestamp=(1, 1_764_000_000_000),
    )


def make_builder() -> Callable[[list[list[Message]]], tuple[Pipeline, FakeConsumer, FakeProducer]]:
    model = load_model("fraud-gbt", MODELS)
    card = np.asarray(model.card_defaults) * 1.0
    merchant = np.asarray(model.merchant_defaults) * 1.0
    redis = FakeRedis({card_key("", "card-0"): pack(card), merchant_key("", "m-1"): pack(merchant)})

    def make(batches: list[list[Message]]) -> tuple[Pipeline, FakeConsumer, FakeProducer]:
        consumer, producer, tracker = FakeConsumer(batches), FakeProducer(), OffsetTracker()
        meta = model.metadata
        pipeline = Pipeline(
            consumer=consumer,  # type: ignore[arg-type]
            publisher=Publisher(producer, tracker),  # type: ignore[arg-type]
            tracker=tracker,
            decoder=make_decoder("raw", reader_schema=transaction_schema()),
            encoder=make_encoder("raw", schema=scored_schema()),
            cache=FeatureCache(
                redis,
                prefix="",
                card_defaults=model.card_defaults,  # type: ignore[arg-type]
                merchant_defaults=model.merchant_defaults,
                breaker=CircuitBreaker(),
            ),
            scorer=Scorer(model),
            model=ModelStamp(
                meta.name, meta.version, meta.thresholds.review, meta.thresholds.decline
            ),
            feature_names=meta.feature_names,
            input_topic=TOPIC,
            output_topic="scored",
            dead_letter_topic="tx.dlq",
            group_id="g",
        )
        return pipeline, consumer, producer

    return make
