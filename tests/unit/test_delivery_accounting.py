"""Scored events share one delivery callback, which finds its input by the output's bytes.

What at-least-once needs of that: every acknowledged output acknowledges exactly its own
input, a failed one fails exactly its own, and nothing stays registered once every report
came in, whatever the order of the reports and however often the same bytes were queued.
"""

from __future__ import annotations

import random

from confluent_kafka import KafkaError, Message

from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import Publisher

TP = ("in", 0)


class ShuffledProducer:
    """Keeps what was produced; ``report`` delivers the reports in any order."""

    def __init__(self) -> None:
        self.queued: list[tuple[bytes, object]] = []

    def produce(self, topic: str, value: bytes, key: str, on_delivery: object, **_: object) -> None:
        self.queued.append((value, on_delivery))

    def report(self, rng: random.Random, failing: set[bytes]) -> None:
        rng.shuffle(self.queued)
        for value, callback in self.queued:
            error = KafkaError(KafkaError._MSG_TIMED_OUT) if value in failing else None
            callback(error, Message(topic="out", partition=0, offset=0, value=value))  # type: ignore[operator]
        self.queued = []


def _publish(values: list[bytes], seed: int, failing: set[bytes]) -> OffsetTracker:
    tracker = OffsetTracker()
    tracker.register(TP, range(len(values)))
    producer = ShuffledProducer()
    publisher = Publisher(producer, tracker)  # type: ignore[arg-type]
    n = len(values)
    publisher.send_many("out", ["k"] * n, values, [(TP, i) for i in range(n)], [None] * n,
                        [0] * n, [None] * n)  # type: ignore[list-item]  # fmt: skip
    producer.report(random.Random(seed), failing)
    assert publisher.unreported == 0
    return tracker


def test_each_report_acknowledges_its_own_input_in_any_order() -> None:
    values = [f"scored-{i}".encode() for i in range(200)]
    for seed in range(5):
        tracker = _publish(values, seed, failing=set())
        assert tracker.committable(TP) == 200
        assert tracker.pending == 0


def test_a_failed_output_fails_its_own_input_and_no_other() -> None:
    values = [f"scored-{i}".encode() for i in range(50)]
    tracker = _publish(values, seed=3, failing={b"scored-17"})
    assert tracker.committable(TP) == 17  # everything before the failed one
    assert tracker.take_failures() == {TP: 17}


def test_the_same_bytes_queued_twice_are_both_reported() -> None:
    values = [b"same", b"other", b"same", b"same"]
    tracker = _publish(values, seed=1, failing=set())
    assert tracker.committable(TP) == 4
