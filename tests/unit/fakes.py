"""Test helpers: events and messages, and stream loops on streamer.testing's fakes."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Message
from fastavro import schemaless_writer
from opentelemetry.trace import Tracer

from streamer.codec.schemas import transaction_schema, without_logical_types
from streamer.kafka.loop import StreamLoop
from streamer.model.registry import load_model
from streamer.observability.observer import Observer, Observers
from streamer.observability.tracing import TracingObserver
from streamer.scoring.kernel import ScoringKernel
from streamer.testing import FakeConsumer, FakeProducer, InMemoryFeatures, sample_event, stream_loop

MODELS = Path(__file__).resolve().parents[2] / "models"
TOPIC = "tx"
Built = tuple[StreamLoop, FakeConsumer, FakeProducer]


def make_event(i: int, **overrides: Any) -> dict[str, Any]:
    """Event ``i``: card ``card-{i % 3}`` at merchant ``m-1`` (only card-0 and m-1 cached)."""
    return sample_event(
        **{
            "transaction_id": f"tx-{i}",
            "card_id": f"card-{i % 3}",
            "merchant_id": "m-1",
            "event_time": 1_764_000_000_000 + i,
            "amount_minor": 1000 + i,
            **overrides,
        }
    )


def avro_raw(event: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, without_logical_types(transaction_schema()), event)
    return buf.getvalue()


def make_message(
    offset: int, value: bytes | None, partition: int = 0, headers: Any = None
) -> Message:
    return Message(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        key=b"k",
        value=value,
        headers=headers,
        timestamp=(1, 1_764_000_000_000),
    )


def make_builder() -> Callable[..., Built]:
    """``build(batches, tracer=None)``: a loop on fakes, the real model, card-0 and m-1 cached."""
    model = load_model("fraud-gbt", MODELS)
    defaults = {"txn_count_1h": 0.0}  # a found entity; every other field at its default

    def build(batches: list[list[Message]], tracer: Tracer | None = None) -> Built:
        features = InMemoryFeatures(model, cards={"card-0": defaults}, merchants={"m-1": {}})
        observer: Observer = (
            Observers([TracingObserver(tracer, TOPIC, "scored", "g")]) if tracer else Observer()
        )
        kernel = ScoringKernel(model, features, observer=observer)
        return stream_loop(batches, kernel, observer=observer)

    return build
