"""Adaptive batching in the loop: what is waiting is scored at once, a backlog makes the
batches grow to the size bound, and a fill wait or a latency target still apply when set.

The consumer here is a queue of waiting messages that records how long each call was
allowed to wait; the real broker's side is exercised by the integration tests.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Message

from streamer.kafka.batching import LatencyTargetSizer
from streamer.testing import FakeConsumer, FakeProducer
from tests.unit.fakes import avro_raw, make_event, make_message


class WaitingQueue(FakeConsumer):
    """Messages already waiting in the client; records each call's timeout."""

    def __init__(self, waiting: list[Message]) -> None:
        super().__init__([])
        self.waiting = waiting
        self.waits: list[tuple[str, float]] = []
        self.taken: list[int] = []

    def poll(self, timeout: float | None = None) -> Message | None:
        self.waits.append(("poll", timeout or 0.0))
        return self.waiting.pop(0) if self.waiting else None

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.waits.append(("consume", timeout))
        out, self.waiting = self.waiting[:num_messages], self.waiting[num_messages:]
        return out


def _messages(n: int) -> list[Message]:
    return [make_message(i, avro_raw(make_event(i))) for i in range(n)]


def _on_queue(build: Any, waiting: list[Message], **loop: Any) -> tuple[Any, WaitingQueue, Any]:
    """An adaptive loop (``max_wait_ms=0``) on the fakes that reads from ``waiting``;
    ``loop`` sets its fields."""
    pipeline, _, producer = build([])
    queue = WaitingQueue(waiting)
    pipeline.consumer = queue
    for name, value in {"max_wait_ms": 0, **loop}.items():
        setattr(pipeline, name, value)
    process = pipeline.process

    def counted(messages: list[Message], **how: Any) -> Any:
        queue.taken.append(len(messages))
        return process(messages, **how)

    pipeline.process = counted
    return pipeline, queue, producer


def _scored(producer: Any) -> int:
    return sum(1 for topic, *_ in producer.delivered if topic == "scored")


def test_a_lone_event_is_scored_in_the_step_it_arrives_without_a_wait_to_fill(
    build: Any,
) -> None:
    pipeline, queue, producer = _on_queue(build, _messages(1))

    pipeline.step()

    assert queue.taken == [1]
    assert _scored(producer) == 1
    # blocked only for the first message; everything after it was taken without waiting
    assert queue.waits[0][0] == "poll"
    assert all(timeout == 0 for _, timeout in queue.waits[1:])


@pytest.mark.parametrize(
    ("waiting", "max_batch_size", "batches"),
    [
        (3, 500, [3]),  # a few waiting: one batch of them, at once
        (1200, 500, [500, 500, 200]),  # a backlog: batches grow to the size bound
        (7, 1, [1] * 7),
    ],
)
def test_a_batch_is_what_is_waiting_up_to_the_size_bound(
    build: Any, waiting: int, max_batch_size: int, batches: list[int]
) -> None:
    pipeline, queue, producer = _on_queue(build, _messages(waiting), max_batch_size=max_batch_size)

    for _ in range(len(batches) + 1):  # and one idle step: nothing left, nothing taken
        pipeline.step()

    assert queue.taken == batches
    assert _scored(producer) == waiting
    assert all(timeout == 0 for call, timeout in queue.waits if call == "consume")


def test_an_idle_step_blocks_for_a_message_instead_of_spinning(build: Any) -> None:
    pipeline, queue, _ = _on_queue(build, [])

    pipeline.step()

    assert queue.taken == []
    assert queue.waits == [("poll", pipeline.idle_wait_s)]
    assert pipeline.idle_wait_s > 0


def test_a_fill_wait_when_set_holds_the_batch_open(build: Any) -> None:
    pipeline, queue, _ = _on_queue(build, _messages(2), max_wait_ms=10)

    pipeline.step()

    assert queue.taken == [2]
    assert queue.waits == [("consume", 0.01)]


def test_a_latency_target_caps_the_batch_and_stays_adaptive(build: Any) -> None:
    sizer = LatencyTargetSizer(10, min_size=16)
    for n in (10, 50, 100, 200, 400, 800):  # 2 ms a batch + 100 µs an event: 30 fit in 5 ms
        sizer.report(n, 0.002 + 100e-6 * n)
    pipeline, queue, _ = _on_queue(build, _messages(100), sizer=sizer)

    pipeline.step()

    assert queue.taken == [30]
    assert all(timeout == 0 for call, timeout in queue.waits if call == "consume")


class SteadyProducer(FakeProducer):
    """A steady stream's producer: a poll answers all but the newest output (the producer
    never runs empty by itself); a flush answers everything."""

    def poll(self, timeout: float = 0) -> int:
        newest, self.queued = self.queued[-1:], self.queued[:-1]
        served = super().poll(timeout)
        self.queued = newest
        return served

    def flush(self, timeout: float = 0) -> int:
        super().poll(timeout)
        return 0


@pytest.mark.parametrize(("settle_every_s", "committed"), [(0.0, True), (3600.0, False)])
def test_a_steady_stream_of_small_batches_is_settled_and_committed_in_bounded_time(
    build: Any, settle_every_s: float, committed: bool
) -> None:
    pipeline, consumer, _ = build([])
    pipeline.consumer = WaitingQueue(_messages(5))
    pipeline.publisher._producer = SteadyProducer()
    pipeline.settle_every_s, pipeline.max_batch_size = settle_every_s, 1

    for _ in range(5):  # five one-event batches, an output always in flight
        pipeline.step()

    assert bool(consumer.commits) == committed  # 3600 s: nothing committed while it flows


class DrainingProducer(FakeProducer):
    """A draining stream's producer: a poll answers what was queued before the previous
    poll (the previous batch is acknowledged while the next is scored); flushes counted."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0
        self._older = 0  # queued before the last poll: answered at the next

    def poll(self, timeout: float = 0) -> int:
        answerable, self.queued = self.queued[: self._older], self.queued[self._older :]
        newer, self.queued = self.queued, answerable
        served = super().poll(timeout)
        self.queued = newer
        self._older = len(newer)
        return served

    def flush(self, timeout: float = 0) -> int:
        self.flushes += 1
        self._older = len(self.queued)
        return super().flush(timeout)


def test_a_drain_that_settles_as_it_goes_is_not_held_up_by_flushes(
    build: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, consumer, _ = build([])
    pipeline.consumer = WaitingQueue(_messages(20))
    producer = pipeline.publisher._producer = DrainingProducer()
    pipeline.settle_every_s, pipeline.max_batch_size = 0.05, 1
    ticks = iter(range(10**6))
    monkeypatch.setattr(time, "monotonic", lambda: next(ticks) * 0.01)  # 10 ms a reading
    pipeline._settled_at = pipeline.publisher.settled_at = 0.0  # on the fake clock

    for _ in range(20):  # each batch's send settles the previous batch first
        pipeline.step()

    assert producer.flushes == 0  # not one every 50 ms: the sends settle what was answered
    assert consumer.commits  # and what was acknowledged is committed
