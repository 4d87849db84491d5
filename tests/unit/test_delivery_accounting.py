"""Scored events share one delivery callback, which finds its input by the output's bytes.

What at-least-once needs of that: every acknowledged output acknowledges exactly its own
input, a failed one fails exactly its own, and nothing stays registered once every report
came in, whatever the order of the reports and however often the same bytes were queued.
With failure reports only (the stream's producer), silence is success only once nothing
is in flight and every failure report was served.
"""

from __future__ import annotations

import random

from confluent_kafka import KafkaError, Message

from streamer.errors import Rejection
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import DeadLetterTopic, Publisher
from streamer.observability.observer import Observer
from streamer.testing import produced

TP = ("in", 0)


class ShuffledProducer:
    """Reports every output (success too); ``report`` delivers the reports in any order."""

    def __init__(self) -> None:
        self.queued: list[tuple[bytes, object]] = []

    def produce(self, *args: object, **kwargs: object) -> None:
        given = produced(*args, **kwargs)  # type: ignore[arg-type]
        self.queued.append((given.value, given.on_delivery))  # type: ignore[arg-type]

    def report(self, rng: random.Random, failing: set[bytes]) -> None:
        rng.shuffle(self.queued)
        for value, callback in self.queued:
            error = KafkaError(KafkaError._MSG_TIMED_OUT) if value in failing else None
            callback(error, Message(topic="out", partition=0, offset=0, value=value))  # type: ignore[operator]
        self.queued = []

    def poll(self, timeout: float = 0) -> int:
        return 0  # reports come with ``report``

    def __len__(self) -> int:
        return len(self.queued)


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


class FailuresOnlyProducer:
    """Reports failures only (``delivery.report.only.error``, as the stream's producer):
    ``answer`` lets the broker answer for what is in flight; ``poll`` serves the failure
    reports; ``len`` counts what is in flight and the reports not yet served."""

    def __init__(self) -> None:
        self.in_flight: list[tuple[str, bytes, object]] = []
        self.reports: list[tuple[object, bytes]] = []

    def produce(self, *args: object, **kwargs: object) -> None:
        given = produced(*args, **kwargs)  # type: ignore[arg-type]
        self.in_flight.append((given.topic, given.value, given.on_delivery))  # type: ignore[arg-type]

    def answer(self, failing: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        for _, value, callback in self.in_flight:
            if value in failing:
                self.reports.append((callback, value))
        self.in_flight = []

    def poll(self, timeout: float = 0) -> int:
        reports, self.reports = self.reports, []
        for callback, value in reports:
            error = KafkaError(KafkaError._MSG_TIMED_OUT)
            callback(error, Message(topic="out", partition=0, offset=0, value=value))  # type: ignore[operator]
        return len(reports)

    def flush(self, timeout: float = 0) -> int:
        self.answer()
        self.poll()
        return len(self)

    def __len__(self) -> int:
        return len(self.in_flight) + len(self.reports)


def _silent(n: int) -> tuple[Publisher, FailuresOnlyProducer, OffsetTracker, list[Rejection]]:
    tracker, producer, lettered = OffsetTracker(), FailuresOnlyProducer(), []
    tracker.register(TP, range(n))

    class Letters(Observer):
        def dead_lettered(self, rejection: Rejection) -> None:
            lettered.append(rejection)

    publisher = Publisher(
        producer,  # type: ignore[arg-type]
        tracker,
        Letters(),
        dead_letters=DeadLetterTopic("dlq", "g"),
    )
    return publisher, producer, tracker, lettered


def _send(publisher: Publisher, offsets: range) -> None:
    n = len(offsets)
    publisher.send_many("out", ["k"] * n, [f"scored-{o}".encode() for o in offsets],
                        [(TP, o) for o in offsets], [None] * n, [1] * n, [None] * n)  # type: ignore[list-item]  # fmt: skip


def test_with_failure_reports_only_silence_acknowledges_once_nothing_is_in_flight() -> None:
    publisher, producer, tracker, _ = _silent(10)
    _send(publisher, range(5))
    publisher.poll(0)
    assert tracker.committable(TP) is None  # in flight: no answer is no acknowledgement
    producer.answer()
    publisher.poll(0)
    assert tracker.committable(TP) == 5
    assert publisher.unreported == 0
    assert publisher.delivered == 5
    assert len(publisher.take_latencies_ms()) == 5


def test_an_unserved_failure_report_holds_back_every_acknowledgement() -> None:
    publisher, producer, tracker, _ = _silent(10)
    _send(publisher, range(4))
    producer.answer(failing={b"scored-2"})
    assert len(producer) == 1  # the report is queued, not served: not yet empty
    assert tracker.committable(TP) is None
    publisher.poll(0)  # serves the failure, then finds the producer empty
    assert tracker.committable(TP) == 2  # 0 and 1; 3 is acknowledged behind the failed 2
    assert tracker.take_failures() == {TP: 2}
    assert publisher.unreported == 0


def test_the_next_batch_settles_the_previous_one_before_it_is_queued() -> None:
    publisher, producer, tracker, _ = _silent(10)
    _send(publisher, range(5))
    producer.answer()  # acknowledged while the next batch was scored
    _send(publisher, range(5, 10))
    assert tracker.committable(TP) == 5  # settled by send_many, before producing
    assert publisher.unreported == 5


def test_dead_letters_are_acknowledged_and_counted_on_settling() -> None:
    publisher, _producer, tracker, lettered = _silent(3)
    msg = Message(topic=TP[0], partition=TP[1], offset=0, value=b"poison")
    publisher.send_dead_letter(msg, Rejection("NotAvro", "garbage", "decode"))
    publisher.poll(0)
    assert lettered == []
    assert tracker.committable(TP) is None
    assert publisher.flush(1.0) == 0
    assert [r.error_class for r in lettered] == ["NotAvro"]
    assert tracker.committable(TP) == 1
    assert publisher.unreported == 0
