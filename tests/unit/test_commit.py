"""The two commit strategies, driven the way the loop drives them.

At-least-once: an input offset is committed only past outputs the broker acknowledged;
failed outputs and batches to re-read are rewound with a logged reason; a drain commits
synchronously. Exactly-once is in ``test_exactly_once.py`` (on the broker:
``test_transactions_faults.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import KafkaException, TopicPartition

from streamer.kafka.batch import Batch
from streamer.kafka.commit import AtLeastOnce
from streamer.kafka.offsets import OffsetTracker

TP = ("in", 0)
TP1 = ("in", 1)


class Consumer:
    """Records commits (with their mode) and seeks; ``fail_commits`` makes commit raise."""

    def __init__(self) -> None:
        self.commits: list[tuple[list[tuple[str, int, int]], bool]] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.fail_commits = False

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if self.fail_commits:
            raise KafkaException("coordinator not available")
        self.commits.append(([(o.topic, o.partition, o.offset) for o in offsets], asynchronous))

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def consumer_group_metadata(self) -> str:
        return "group-metadata"


class Publisher:
    """``poll`` acknowledges the oldest outstanding offset, as a delivery report would."""

    def __init__(self, tracker: OffsetTracker | None = None, left: int = 0) -> None:
        self.tracker = tracker
        self.outstanding: list[tuple[tuple[str, int], int]] = []
        self.polls: list[float] = []
        self.flushes: list[float] = []
        self.left = left

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        if self.tracker is not None and self.outstanding:
            self.tracker.ack(*self.outstanding.pop(0))
        return 1

    def flush(self, timeout: float) -> int:
        self.flushes.append(timeout)
        return self.left


def at_least_once(**options: Any) -> tuple[AtLeastOnce, Consumer, Publisher, OffsetTracker]:
    consumer, tracker = Consumer(), OffsetTracker()
    publisher = Publisher(tracker, left=options.pop("left", 0))
    strategy = AtLeastOnce(consumer, publisher, tracker, **options)  # type: ignore[arg-type]
    return strategy, consumer, publisher, tracker


def test_offsets_commit_asynchronously_once_their_outputs_are_acknowledged() -> None:
    strategy, consumer, _, tracker = at_least_once()
    strategy.begin(Batch(offsets={TP: [0, 1, 2], TP1: [7]}))
    strategy.end(Batch())
    strategy.tick()
    assert consumer.commits == []  # nothing acknowledged: no commit call at all
    tracker.ack(TP, 0)
    tracker.ack(TP, 2)
    strategy.tick()
    assert consumer.commits == [([("in", 0, 1)], True)]
    assert strategy.committable(TP) == 1
    assert strategy.committable(TP1) is None
    strategy.tick()
    assert len(consumer.commits) == 1  # nothing advanced since
    assert strategy.rewinds == 0


def test_drain_flushes_then_commits_synchronously() -> None:
    strategy, consumer, publisher, tracker = at_least_once(drain_timeout_s=7.5)
    strategy.begin(Batch(offsets={TP: [4, 5]}))
    tracker.ack_all(TP, [4, 5])
    strategy.drain()
    assert publisher.flushes == [7.5]
    assert consumer.commits == [([("in", 0, 6)], False)]


def test_a_drain_that_leaves_outputs_unacknowledged_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy, consumer, publisher, _ = at_least_once(left=2)
    strategy.begin(Batch(offsets={TP: [0, 1]}))
    with caplog.at_level(logging.ERROR, logger="streamer.kafka.commit"):
        strategy.drain()
    assert publisher.flushes == [30.0]  # the default drain timeout
    assert caplog.messages == ["2 outputs unacknowledged after 30s; their inputs stay uncommitted"]
    assert consumer.commits == []


def test_a_clean_drain_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    strategy, _, _, _ = at_least_once()
    with caplog.at_level(logging.DEBUG, logger="streamer.kafka.commit"):
        strategy.drain()
    assert caplog.messages == []


@pytest.mark.parametrize(("in_flight", "polls"), [(3, 0), (4, 1), (6, 3)])
def test_backpressure_polls_until_no_more_than_the_limit_is_in_flight(
    in_flight: int, polls: int
) -> None:
    strategy, _, publisher, _ = at_least_once(max_in_flight=3)
    offsets = list(range(in_flight))
    strategy.begin(Batch(offsets={TP: offsets}))
    publisher.outstanding = [(TP, o) for o in offsets]
    strategy.tick()
    assert publisher.polls == [0.05] * polls


def test_the_default_in_flight_limit_is_twenty_thousand() -> None:
    strategy, _, publisher, _ = at_least_once()
    offsets = list(range(20_001))
    strategy.begin(Batch(offsets={TP: offsets}))
    publisher.outstanding = [(TP, o) for o in offsets]
    strategy.tick()
    assert publisher.polls == [0.05]


def test_a_batch_to_reread_is_rewound_with_the_registry_as_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy, consumer, _, tracker = at_least_once()
    with caplog.at_level(logging.WARNING, logger="streamer.kafka.commit"):
        strategy.begin(Batch(offsets={TP: [3, 4, 5]}, reread={TP: 4}))
        tracker.ack(TP, 3)
        strategy.tick()
    assert consumer.seeks == [("in", 0, 4)]
    assert strategy.rewinds == 1
    assert caplog.messages == ["rewinding in[0] to 4: the schema registry was unavailable"]
    assert consumer.commits == [([("in", 0, 4)], True)]
    strategy.begin(Batch(offsets={TP: [4]}))
    tracker.fail(TP, 4)  # a later, undelivered output of the same partition
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="streamer.kafka.commit"):
        strategy.tick()
    assert caplog.messages == ["rewinding in[0] to 4: reprocessing undelivered outputs"]
    assert strategy.rewinds == 2


def test_retry_rewinds_each_partition_to_its_first_offset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy, consumer, _, _ = at_least_once()
    batch = Batch(offsets={TP: [8, 9], TP1: [2, 3], ("in", 2): []})
    strategy.begin(batch)
    strategy.retry(batch)
    with caplog.at_level(logging.WARNING, logger="streamer.kafka.commit"):
        strategy.tick()
    assert sorted(consumer.seeks) == [("in", 0, 8), ("in", 1, 2)]
    assert strategy.rewinds == 2
    assert sorted(caplog.messages) == [
        "rewinding in[0] to 8: reprocessing undelivered outputs",
        "rewinding in[1] to 2: reprocessing undelivered outputs",
    ]


def test_a_failed_commit_is_logged_and_the_next_one_carries_the_offset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy, consumer, _, tracker = at_least_once(commit_interval_s=0.0)
    strategy.begin(Batch(offsets={TP: [0, 1]}))
    tracker.ack(TP, 0)
    consumer.fail_commits = True
    with caplog.at_level(logging.WARNING, logger="streamer.kafka.commit"):
        strategy.tick()
        strategy.drain()
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith("offset commit failed: ")
    assert "coordinator not available" in caplog.messages[0]
    consumer.fail_commits = False
    tracker.ack(TP, 1)
    strategy.tick()
    assert consumer.commits == [([("in", 0, 2)], True)]


def test_while_streaming_commits_are_at_most_one_per_interval_and_a_drain_commits_at_once() -> None:
    clock = [100.0]
    strategy, consumer, _, tracker = at_least_once(commit_interval_s=0.1, clock=lambda: clock[0])
    strategy.begin(Batch(offsets={TP: [0, 1, 2, 3]}))
    tracker.ack(TP, 0)
    strategy.tick()  # the first commit goes at once
    tracker.ack(TP, 1)
    clock[0] += 0.05
    strategy.tick()  # within the interval: held
    assert consumer.commits == [([("in", 0, 1)], True)]
    clock[0] += 0.06
    strategy.tick()  # the interval is over: what advanced meanwhile, in one commit
    tracker.ack(TP, 2)
    strategy.drain()  # a stop (or a revocation) commits what is acknowledged, at once
    assert consumer.commits == [
        ([("in", 0, 1)], True),
        ([("in", 0, 2)], True),
        ([("in", 0, 3)], False),
    ]


def test_forgotten_partitions_are_dropped_from_the_tracker() -> None:
    strategy, consumer, _, tracker = at_least_once()
    strategy.begin(Batch(offsets={TP: [0], TP1: [0]}))
    strategy.forget([TP1])
    assert tracker.pending == 1
    tracker.ack(TP1, 0)
    strategy.tick()
    assert consumer.commits == []
