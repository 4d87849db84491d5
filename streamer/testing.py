"""In-memory stand-ins for Kafka and Redis, so a model and feature setup can be tested
without servers, through the same code the stream runs.

``InMemoryFeatures`` is the real ``FeatureCache`` over a dict instead of Redis (set
``down = True`` to see degraded scoring); ``FakeConsumer``/``FakeProducer`` replace
confluent-kafka's clients in a ``StreamLoop`` (``stream_loop`` builds one);
``sample_event`` is a valid TransactionEvent to start from::

    kernel = ScoringKernel(model, InMemoryFeatures(model, cards={"card-1": {...}}))
    scored = kernel.score([sample_event(card_id="card-1")], [(0, 0)])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from confluent_kafka import KafkaError, Message, TopicPartition

from streamer.codec.schemas import scored_schema, transaction_schema
from streamer.codec.wire import make_decoder, make_encoder
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import FeatureCache
from streamer.features.layout import card_key, merchant_key, pack
from streamer.features.loader import parse_record
from streamer.kafka.commit import AtLeastOnce
from streamer.kafka.loop import LoopStats, StatsObserver, StreamLoop, Topics
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import DeadLetterTopic, Publisher
from streamer.model.registry import LoadedModel
from streamer.observability.observer import Observer, Observers
from streamer.scoring.kernel import ScoringKernel

__all__ = [
    "FakeConsumer",
    "FakeProducer",
    "InMemoryFeatures",
    "InMemoryRedis",
    "Produced",
    "produced",
    "sample_event",
    "stream_loop",
]

Features = Mapping[str, Mapping[str, Any]]


class InMemoryRedis:
    """The one Redis command the feature cache uses (MGET), over a dict; ``down`` fails it."""

    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        self.data = data if data is not None else {}
        self.down = False

    def mget(self, keys: list[str]) -> list[bytes | None]:
        if self.down:
            raise redis.ConnectionError("in-memory Redis is down")
        return [self.data.get(k) for k in keys]

    def ping(self) -> bool:
        if self.down:
            raise redis.ConnectionError("in-memory Redis is down")
        return True


class InMemoryFeatures(FeatureCache):
    """A ``FeatureCache`` over ``InMemoryRedis``, filled from by-name feature values.

    ``cards`` and ``merchants`` map an id to its fields as ``features load`` takes them
    (``{"txn_count_1h": 3, "home_country": "DE"}``); omitted fields take the layout's
    defaults, unknown ones raise ``ValueError``. Entities not given are cache misses.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        cards: Features | None = None,
        merchants: Features | None = None,
    ) -> None:
        self.redis = InMemoryRedis()
        super().__init__(
            self.redis,  # type: ignore[arg-type]
            prefix="",
            card_defaults=model.card_defaults,
            merchant_defaults=model.merchant_defaults,
            breaker=CircuitBreaker(),
        )
        for entity, entities, key in (
            ("card", cards, card_key),
            ("merchant", merchants, merchant_key),
        ):
            for entity_id, values in (entities or {}).items():
                _, _, row = parse_record({"entity": entity, "id": entity_id, **values})
                self.redis.data[key("", entity_id)] = pack(row)

    @property
    def down(self) -> bool:
        return self.redis.down

    @down.setter
    def down(self, value: bool) -> None:
        self.redis.down = value


def sample_event(**overrides: Any) -> dict[str, Any]:
    """A valid decoded TransactionEvent (every schema field), with ``overrides`` applied."""
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


@dataclass(frozen=True)
class Produced:
    """What one ``Producer.produce`` call was given (``on_delivery``, or its alias
    ``callback``)."""

    topic: str
    value: bytes | str | None
    key: bytes | str | None
    partition: int
    on_delivery: Callable[..., None] | None
    timestamp: int
    headers: Any


def produced(
    topic: str,
    value: bytes | str | None = None,
    key: bytes | str | None = None,
    partition: int = -1,
    on_delivery: Callable[..., None] | None = None,
    callback: Callable[..., None] | None = None,
    timestamp: int = 0,
    headers: Any = None,
) -> Produced:
    """``Producer.produce``'s arguments bound as the real client binds them, by keyword or
    by position in this order (the stream's hot path passes them by position): the one
    place a stand-in producer reads its arguments."""
    return Produced(topic, value, key, partition, on_delivery or callback, timestamp, headers)


class FakeProducer:
    """Queues produced records; ``poll``/``flush`` deliver them, or fail chosen values.

    Reports failures only, as the stream's producer is configured (``STREAM_PRODUCER``);
    ``len()`` counts what is queued and not yet answered, as librdkafka's does."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, bytes | None, Any, Callable[..., None], Any]] = []
        self.delivered: list[tuple[str, bytes | None, Any, Any]] = []
        self.fail_values: set[bytes] = set()

    def produce(self, *args: Any, **kwargs: Any) -> None:
        given = produced(*args, **kwargs)
        assert given.on_delivery is not None, "every output of the stream has a callback"
        assert not isinstance(given.value, str), "the stream produces bytes"
        self.queued.append((given.topic, given.value, given.key, given.on_delivery, given.headers))

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
        return len(queued)

    def __len__(self) -> int:
        return len(self.queued)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


class FakeConsumer:
    """Hands out the given batches in order, then nothing; records commits and seeks.

    A batch stays a batch under adaptive batching too: ``poll`` hands out its first message
    (an empty batch: nothing arrived, ``None``) and the ``consume`` that follows the rest.
    """

    def __init__(self, batches: list[list[Message]]) -> None:
        self.batches = batches
        self._waiting: list[Message] | None = None  # the rest of the batch ``poll`` opened
        self.commits: list[list[TopicPartition]] = []
        self.seeks: list[TopicPartition] = []
        self.paused: list[TopicPartition] = []
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def poll(self, timeout: float | None = None) -> Message | None:
        batch = self.batches.pop(0) if self.batches else []
        if not batch:
            return None
        self._waiting = batch[1:]
        return batch[0]

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            if len(waiting) > num_messages:  # the rest is still waiting: the next batch
                self.batches.insert(0, waiting[num_messages:])
            return waiting[:num_messages]
        return self.batches.pop(0) if self.batches else []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.commits.append(offsets)

    def seek(self, partition: TopicPartition) -> None:
        self.seeks.append(partition)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused = list(partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused = []

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return partitions

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = True) -> tuple[int, int]:
        return -1, -1

    def close(self) -> None:
        self.closed = True


def stream_loop(
    batches: list[list[Message]],
    kernel: ScoringKernel,
    *,
    input_format: str = "raw",
    observer: Observer | None = None,
) -> tuple[StreamLoop, FakeConsumer, FakeProducer]:
    """A ``StreamLoop`` (at-least-once) on fakes, reading ``batches`` from topic ``tx``."""
    consumer, producer, tracker, stats = (
        FakeConsumer(batches),
        FakeProducer(),
        OffsetTracker(),
        LoopStats(),
    )
    observers = Observers([observer or Observer(), StatsObserver(stats)])
    publisher = Publisher(
        producer,  # type: ignore[arg-type]
        tracker,
        observers,
        dead_letters=DeadLetterTopic("tx.dlq", "g"),
    )
    loop = StreamLoop(
        consumer=consumer,  # type: ignore[arg-type]
        publisher=publisher,
        decoder=make_decoder(input_format, reader_schema=transaction_schema()),  # type: ignore[arg-type]
        encoder=make_encoder(input_format, schema=scored_schema()),  # type: ignore[arg-type]
        kernel=kernel,
        commits=AtLeastOnce(consumer, publisher, tracker),  # type: ignore[arg-type]
        topics=Topics("tx", "scored", "tx.dlq", "g"),
        observer=observers,
        stats=stats,
    )
    return loop, consumer, producer
