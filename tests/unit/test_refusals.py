"""A record the broker refuses for good never blocks its partition and is never lost.

A refused scored event is replaced by a dead letter of its input; a refused dead letter is
re-sent cut down, smaller each time, then the smallest a few times, each after a longer
pause; when even that is refused, its input is failed (retried after a rewind) and, once
nothing was acknowledged for ``give_up_after_s``, the stream is told to stop. A record
refused before it was queued, or a full local queue, takes the careful path to the same
answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

from streamer.errors import Rejection
from streamer.kafka.delivery import Output
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import DeadLetterRefusedError, DeadLetterTopic, Publisher
from streamer.kafka.refusals import (
    SMALLEST_LETTER,
    SMALLEST_RETRIES,
    GiveUpClock,
    Letter,
    next_letter,
)
from streamer.observability.observer import Observer
from streamer.testing import produced

TP = ("in", 0)
TOO_LARGE = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)


class LimitedProducer:
    """Reports failures only; a topic in ``limits`` refuses (MSG_SIZE_TOO_LARGE) a record
    whose value is longer than its limit. ``refuse_now`` values raise at ``produce`` (as
    librdkafka does past ``message.max.bytes``); ``full`` raises ``BufferError`` that many
    times first."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self.refuse_now: set[bytes] = set()
        self.full = 0
        self.queued: list[tuple[str, bytes, Any, Callable[..., None]]] = []
        self.written: list[tuple[str, bytes, Any]] = []

    def produce(self, *args: Any, **kwargs: Any) -> None:
        given = produced(*args, **kwargs)
        if self.full:
            self.full -= 1
            raise BufferError("queue full")
        if given.value in self.refuse_now:
            raise KafkaException(TOO_LARGE)
        assert given.on_delivery is not None
        assert isinstance(given.value, bytes)
        self.queued.append((given.topic, given.value, given.headers, given.on_delivery))

    def poll(self, timeout: float = 0) -> int:
        queued, self.queued = self.queued, []
        for topic, value, headers, callback in queued:
            if len(value) > self.limits.get(topic, 1 << 30):
                callback(TOO_LARGE, Message(topic=topic, partition=0, offset=0, value=value))
            else:
                self.written.append((topic, value, headers))
        return len(queued)

    def flush(self, timeout: float = 0) -> int:
        while self.queued:
            self.poll()
        return 0

    def __len__(self) -> int:
        return len(self.queued)


def _publisher(
    producer: LimitedProducer, give_up_after_s: float = 60.0
) -> tuple[Publisher, OffsetTracker, list[str]]:
    tracker, lettered = OffsetTracker(), []
    tracker.register(TP, range(3))

    class Letters(Observer):
        def dead_lettered(self, rejection: Rejection) -> None:
            lettered.append(rejection.error_class)

    publisher = Publisher(
        producer,  # type: ignore[arg-type]
        tracker,
        Letters(),
        dead_letters=DeadLetterTopic("dlq", "g"),
        give_up_after_s=give_up_after_s,
    )
    return publisher, tracker, lettered


def _input(value: bytes, offset: int = 0) -> Message:
    return Message(topic=TP[0], partition=TP[1], offset=offset, key=b"card", value=value)


def _send_scored(publisher: Publisher, value: bytes, origin: Message) -> None:
    publisher.send_many("out", ["card"], [value], [(TP, origin.offset() or 0)], [None], [1],
                        [origin])  # fmt: skip


def test_the_ladder_goes_whole_then_cut_by_four_then_the_smallest_with_longer_pauses() -> None:
    rejection = Rejection("NotAvro", "garbage", "decode")
    output = Output(TP, 0, origin=_input(b"x"))
    first = next_letter(output, "too large", max_bytes=100_000)
    assert first is not None
    assert first.rejection.error_class == "OutputRefused"
    assert "too large" in first.rejection.message
    assert first.budget == 0
    letters: list[Letter] = []
    output = Output(TP, 0, origin=_input(b"x"), rejection=rejection)
    while (letter := next_letter(output, "too large", max_bytes=100_000)) is not None:
        letters.append(letter)
        output = Output(TP, 0, origin=output.origin, rejection=rejection,
                        budget=letter.budget, attempts=letter.attempts)  # fmt: skip
    budgets = [letter.budget for letter in letters]
    assert budgets == [100_000, 25_000, 6_250, 1_562] + [SMALLEST_LETTER] * SMALLEST_RETRIES
    pauses = [letter.pause_s for letter in letters if letter.pause_s]
    assert len(pauses) == SMALLEST_RETRIES
    assert pauses == sorted(pauses)
    assert all(letter.rejection is rejection for letter in letters)


def test_the_give_up_clock_restarts_when_anything_is_acknowledged() -> None:
    now = [0.0]
    clock = GiveUpClock(10.0, monotonic=lambda: now[0])
    assert not clock.refused(delivered=5)
    now[0] = 9.0
    assert not clock.refused(delivered=6)  # an acknowledgement meanwhile: from 9 s on
    now[0] = 18.0
    assert not clock.refused(delivered=6)
    now[0] = 19.0
    assert clock.refused(delivered=6)


def test_a_refused_scored_event_is_replaced_by_a_dead_letter_of_its_input() -> None:
    producer = LimitedProducer({"out": 10})
    publisher, tracker, lettered = _publisher(producer)
    origin = _input(b"the input")
    _send_scored(publisher, b"a scored event longer than ten bytes", origin)
    assert publisher.flush(1.0) == 0
    [(topic, value, headers)] = producer.written
    assert (topic, value) == ("dlq", b"the input")
    assert dict(headers)["streamer.error.class"] == b"OutputRefused"
    assert lettered == ["OutputRefused"]
    assert (publisher.refused, publisher.failed, publisher.delivered) == (1, 0, 1)
    assert tracker.committable(TP) == 1


def test_a_refused_dead_letter_is_cut_down_until_the_topic_takes_it() -> None:
    producer = LimitedProducer({"dlq": 5_000})
    publisher, tracker, lettered = _publisher(producer)
    publisher.send_dead_letter(_input(b"v" * 2_000_000), Rejection("NotAvro", "bad", "decode"))
    assert publisher.flush(1.0) == 0
    [(topic, value, headers)] = producer.written
    assert topic == "dlq"
    assert 0 < len(value) <= 1_000_000 // 4**4
    assert dict(headers)["streamer.truncated"] == b"true"
    assert lettered == ["NotAvro"]
    assert publisher.refused == 5  # whole, 1 MB, 250, 62.5, 15.6 kB; then 3.9 kB fits
    assert tracker.committable(TP) == 1


def test_a_topic_refusing_even_the_smallest_letter_fails_the_input_then_stops_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr("time.sleep", pauses.append)  # the pauses between the smallest
    producer = LimitedProducer({"dlq": 0})
    publisher, tracker, lettered = _publisher(producer, give_up_after_s=0.0)
    publisher.send_dead_letter(_input(b"poison"), Rejection("NotAvro", "bad", "decode"))
    assert publisher.flush(1.0) == 0
    assert producer.written == []
    assert lettered == []
    assert len(pauses) == SMALLEST_RETRIES
    assert pauses == sorted(pauses)
    assert publisher.failed == 1
    assert tracker.take_failures() == {TP: 0}
    assert isinstance(publisher.fatal, DeadLetterRefusedError)
    assert "'dlq'" in str(publisher.fatal)
    assert publisher.fatal.exit_code == 4


def test_a_record_refused_before_queueing_is_dead_lettered_like_a_refused_one() -> None:
    producer = LimitedProducer({})
    producer.refuse_now.add(b"refused at once")
    publisher, tracker, lettered = _publisher(producer)
    _send_scored(publisher, b"refused at once", _input(b"the input"))
    assert publisher.flush(1.0) == 0
    assert [(t, v) for t, v, _ in producer.written] == [("dlq", b"the input")]
    assert lettered == ["OutputRefused"]
    assert tracker.committable(TP) == 1


def test_a_full_queue_waits_for_room_and_loses_nothing() -> None:
    producer = LimitedProducer({})
    producer.full = 3
    publisher, tracker, _ = _publisher(producer)
    values = [b"scored-0", b"scored-1", b"scored-2"]
    origins = [_input(b"in", offset) for offset in range(3)]
    publisher.send_many("out", ["card"] * 3, values, [(TP, o) for o in range(3)], [None] * 3,
                        [1] * 3, origins)  # fmt: skip
    assert publisher.flush(1.0) == 0
    assert sorted(v for _, v, _ in producer.written) == values
    assert tracker.committable(TP) == 3
    assert publisher.unreported == 0
