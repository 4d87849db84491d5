"""The loop's logic with in-memory stand-ins for the consumer, producer and Redis client.

The broker-facing behaviour is proven again on the real broker in tests/integration; here
the point is the bookkeeping: what is published, what is dead-lettered with which headers,
and that no offset is committed before its output was acknowledged.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from confluent_kafka import TopicPartition
from fastavro import schemaless_reader

from streamer.codec.schemas import scored_schema, without_logical_types
from streamer.kafka.intake import filled
from streamer.model.scorer import Scorer
from tests.unit.fakes import TOPIC, avro_raw, make_event, make_message


def test_valid_events_are_scored_and_poison_is_dead_lettered_in_the_same_batch(build: Any) -> None:
    traceparent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    batch = [
        make_message(
            0, avro_raw(make_event(0)), headers=[("traceparent", traceparent), ("x", b"y")]
        ),
        make_message(1, b"\x02garbage", headers=[("x", b"y")]),
        make_message(2, avro_raw(make_event(2))),
    ]
    pipeline, consumer, producer = build([batch])

    pipeline.step()

    scored = [d for d in producer.delivered if d[0] == "scored"]
    dead = [d for d in producer.delivered if d[0] == "tx.dlq"]
    records = [
        schemaless_reader(io.BytesIO(v), without_logical_types(scored_schema()))
        for _, v, _, _ in scored
    ]
    assert [r["transaction_id"] for r in records] == ["tx-0", "tx-2"]
    assert [k for _, _, k, _ in scored] == ["card-0", "card-2"]
    assert [(r["source_partition"], r["source_offset"]) for r in records] == [(0, 0), (0, 2)]
    assert [r["feature_status"] for r in records] == ["COMPLETE", "PARTIAL"]
    assert scored[0][3] == [("traceparent", traceparent)]  # the input's trace continues
    assert len(dead) == 1
    _, value, key, headers = dead[0]
    assert (value, key) == (b"\x02garbage", b"k")  # untouched
    names = dict(headers)
    assert names["x"] == b"y"
    assert names["streamer.error.stage"] == b"decode"
    assert names["streamer.original.offset"] == b"1"
    assert names["streamer.original.topic"] == TOPIC.encode()
    assert names["streamer.consumer.group"] == b"g"
    assert names["streamer.error.class"]
    assert consumer.commits == [[TopicPartition(TOPIC, 0, 3)]]
    assert (pipeline.stats.scored, pipeline.stats.dead_lettered) == (2, 1)


def test_nothing_is_committed_before_the_broker_acknowledges(build: Any) -> None:
    pipeline, consumer, _ = build([])
    pipeline.process(
        [make_message(0, avro_raw(make_event(0))), make_message(1, avro_raw(make_event(1)))]
    )
    pipeline.commits.tick()
    assert consumer.commits == []
    pipeline.publisher.poll()  # the broker answers; the loop serves reports, settles
    pipeline.commits.tick()
    assert consumer.commits == [[TopicPartition(TOPIC, 0, 2)]]


def test_a_failed_delivery_rewinds_and_holds_back_the_commit(build: Any) -> None:
    pipeline, consumer, producer = build(
        [
            [
                make_message(0, avro_raw(make_event(0))),
                make_message(1, b""),
                make_message(2, avro_raw(make_event(2))),
            ]
        ]
    )
    producer.fail_values.add(b"")  # the dead letter of offset 1 cannot be written

    pipeline.step()

    assert consumer.seeks == [TopicPartition(TOPIC, 0, 1)]
    assert consumer.commits == [[TopicPartition(TOPIC, 0, 1)]]
    assert pipeline.commits.tracker.pending == 0


def test_revocation_drains_and_commits_before_giving_partitions_up(build: Any) -> None:
    pipeline, consumer, producer = build([])
    pipeline.process(
        [
            make_message(0, avro_raw(make_event(0)), partition=0),
            make_message(0, avro_raw(make_event(1)), partition=1),
        ]
    )
    assert producer.queued

    pipeline.revoked(consumer, [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])  # type: ignore[arg-type]

    assert producer.queued == []
    assert sorted((tp.partition, tp.offset) for tp in consumer.commits[0]) == [(0, 1), (1, 1)]
    assert pipeline.commits.tracker.pending == 0


def test_unknown_entities_use_the_model_defaults(build: Any) -> None:
    pipeline, _, producer = build(
        [[make_message(0, avro_raw(make_event(1, merchant_id="nobody")))]]
    )
    pipeline.step()
    (record,) = [
        schemaless_reader(io.BytesIO(v), without_logical_types(scored_schema()))
        for t, v, _, _ in producer.delivered
        if t == "scored"
    ]
    assert record["feature_status"] == "DEFAULTED"
    assert 0.0 <= record["score"] <= 1.0


class PickyScorer:
    """Raises for any batch holding an amount of exactly 4242.42 (a model bug, say)."""

    def __init__(self, inner: Scorer, column: int) -> None:
        self.inner, self.column, self.calls = inner, column, 0

    def score(self, matrix: np.ndarray) -> np.ndarray:
        self.calls += 1
        if np.any(np.isclose(matrix[:, self.column], 4242.42)):
            raise RuntimeError("model cannot handle this row")
        return self.inner.score(matrix)


def test_a_row_that_breaks_the_model_is_isolated_and_dead_lettered(build: Any) -> None:
    events = [make_event(i, amount_minor=424242 if i in (3, 6) else 1000 + i) for i in range(8)]
    pipeline, consumer, producer = build(
        [[make_message(i, avro_raw(e)) for i, e in enumerate(events)]]
    )
    model = pipeline.kernel.model
    column = list(model.metadata.feature_names).index("amount")
    pipeline.kernel.use(model, PickyScorer(Scorer(model), column))

    pipeline.step()

    scored = [
        schemaless_reader(io.BytesIO(v), without_logical_types(scored_schema()))["transaction_id"]
        for t, v, _, _ in producer.delivered
        if t == "scored"
    ]
    dead = [dict(h) for t, _, _, h in producer.delivered if t == "tx.dlq"]
    assert scored == [f"tx-{i}" for i in (0, 1, 2, 4, 5, 7)]
    assert [
        (d["streamer.original.offset"], d["streamer.error.stage"], d["streamer.error.class"])
        for d in dead
    ] == [(b"3", b"score", b"RuntimeError"), (b"6", b"score", b"RuntimeError")]
    assert consumer.commits == [[TopicPartition(TOPIC, 0, 8)]]


@pytest.mark.parametrize(
    ("overrides", "error_class"),
    [
        ({"amount_minor": 0}, "AmountNotPositive"),
        ({"amount_minor": -5}, "AmountNotPositive"),
        ({"amount_minor": 2_000_000_000_00}, "AmountOutOfRange"),
        ({"currency": "XXQ"}, "UnknownCurrency"),
        ({"event_time": 4_000_000_000_000}, "EventTimeInFuture"),
        ({"event_time": 5}, "EventTimeOutOfRange"),
        ({"mcc": 123456}, "InvalidMcc"),
        ({"merchant_country": "germany"}, "InvalidCountry"),
        ({"card_id": ""}, "MissingId"),
        ({"card_id": "c" * 129}, "IdTooLong"),
        ({"transaction_id": "t" * 400_000}, "IdTooLong"),
        ({"device_id": "d" * 129}, "IdTooLong"),
        ({"terminal_id": "x" * 129}, "IdTooLong"),
        ({"acquirer_id": "a" * 129}, "IdTooLong"),
    ],
)
def test_out_of_domain_values_are_dead_lettered_at_validate(
    build: Any, overrides: dict[str, Any], error_class: str
) -> None:
    pipeline, _, producer = build(
        [
            [
                make_message(0, avro_raw(make_event(0, **overrides))),
                make_message(1, avro_raw(make_event(1))),
            ]
        ]
    )
    pipeline.kernel.clock = lambda: 1_764_000_100_000
    pipeline.step()
    (dead,) = [dict(h) for t, _, _, h in producer.delivered if t == "tx.dlq"]
    assert dead["streamer.error.class"] == error_class.encode()
    assert dead["streamer.error.stage"] == b"validate"
    assert [t for t, *_ in producer.delivered].count("scored") == 1


def test_a_quiet_stream_settles_its_outputs_within_the_batch_wait(build: Any) -> None:
    """With failure reports only, outputs are settled between polls: while some are in
    flight the consume wait is split around one, and the batch stays one batch."""
    first = [make_message(0, avro_raw(make_event(0)))]
    later = [[make_message(1, avro_raw(make_event(1)))], [make_message(2, avro_raw(make_event(2)))]]
    pipeline, consumer, _ = build(later)
    waits: list[float] = []
    consume = consumer.consume

    def recording(size: int, timeout: float) -> Any:
        waits.append(timeout)
        return consume(size, timeout)

    consumer.consume = recording  # type: ignore[method-assign]
    pipeline.process(first)  # queued, not answered: in flight
    assert pipeline.publisher.unreported == 1

    messages = filled(consumer, pipeline.publisher, 500, 0.05, pipeline.settle_after_s)

    assert [m.offset() for m in messages] == [1, 2]  # both consumes make one batch
    assert waits[0] == pipeline.settle_after_s
    assert 0 < waits[1] <= 0.05  # what is left of the wait
    assert pipeline.publisher.unreported == 0  # settled between the two
    pipeline.commits.tick()
    assert consumer.commits == [[TopicPartition(TOPIC, 0, 1)]]
    waits.clear()
    filled(consumer, pipeline.publisher, 500, 0.05, pipeline.settle_after_s)  # nothing in flight
    assert waits == [0.05]
