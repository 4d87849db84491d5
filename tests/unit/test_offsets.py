"""At-least-once bookkeeping: commit only past a contiguous acknowledged prefix."""

from __future__ import annotations

import pytest

from streamer.kafka.offsets import OffsetTracker

TP = ("in", 0)


@pytest.mark.parametrize(
    ("consumed", "acked", "expected"),
    [
        ([0, 1, 2], [], None),
        ([0, 1, 2], [0], 1),
        ([0, 1, 2], [1, 2], None),  # 0 outstanding holds back everything after it
        ([0, 1, 2], [2, 1, 0], 3),
        ([10, 12, 15], [10, 12], 13),  # offsets with gaps (txn markers, compaction)
        ([10, 12, 15], [15, 12, 10], 16),
    ],
)
def test_committable_is_one_past_the_acknowledged_prefix(
    consumed: list[int], acked: list[int], expected: int | None
) -> None:
    tracker = OffsetTracker()
    tracker.register(TP, consumed)
    for offset in acked:
        tracker.ack(TP, offset)
    assert tracker.committable(TP) == expected
    assert tracker.pending == len(consumed) - len(acked)


def test_commits_reports_only_advances() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, [0, 1])
    tracker.register(("in", 1), [5])
    tracker.ack(TP, 0)
    assert tracker.commits() == {TP: 1}
    assert tracker.commits() == {}
    tracker.ack(("in", 1), 5)
    tracker.ack(TP, 1)
    assert tracker.commits() == {TP: 2, ("in", 1): 6}


def test_failed_delivery_rewinds_and_blocks_the_commit() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, [0, 1, 2, 3])
    tracker.ack(TP, 0)
    tracker.fail(TP, 2)
    tracker.ack(TP, 1)
    tracker.fail(TP, 1)  # already acknowledged: its output exists, nothing to redo
    assert tracker.take_failures() == {TP: 2}
    assert tracker.take_failures() == {}
    assert tracker.committable(TP) == 2
    assert tracker.pending == 0  # 2 and 3 will be consumed and registered again
    tracker.ack(TP, 3)  # a late ack for a forgotten offset changes nothing
    assert tracker.committable(TP) == 2
    tracker.register(TP, [2, 3])
    tracker.ack(TP, 2)
    tracker.ack(TP, 3)
    assert tracker.committable(TP) == 4


def test_forgotten_partitions_ignore_late_acknowledgements() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, [0, 1])
    tracker.forget([TP])
    tracker.ack(TP, 0)
    assert tracker.pending == 0
    assert tracker.committable(TP) is None
    assert tracker.commits() == {}


def test_registering_twice_counts_once() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, [0, 1])
    tracker.register(TP, [1, 2])
    assert tracker.pending == 3


def test_a_stale_failure_never_rewinds_behind_the_commit() -> None:
    """Found by the state machine: a failure report from before a rewind, for an offset that
    was read again and acknowledged since, rewound behind the committable offset."""
    tracker = OffsetTracker()
    tracker.register(TP, [0, 1])
    tracker.fail(TP, 0)
    assert tracker.take_failures() == {TP: 0}
    tracker.register(TP, [0, 1])
    tracker.fail(TP, 1)  # the report of the first read of 1 arrives late
    tracker.ack(TP, 0)
    tracker.ack(TP, 1)
    assert tracker.committable(TP) == 2
    assert tracker.take_failures() == {}
    assert tracker.pending == 0


def test_a_stale_failure_does_not_hide_a_real_one_behind_it() -> None:
    """Found by the state machine: only the lowest failed offset was kept, so a stale report
    (from before a rewind) for an offset acknowledged since hid a real failure after it, and
    the partition's commit stalled there for good."""
    tracker = OffsetTracker()
    tracker.register(TP, [0, 1])
    tracker.fail(TP, 1)  # the current output of 1 failed
    tracker.fail(TP, 0)  # a late report about an older output of 0
    tracker.ack(TP, 0)  # 0's current output is on the broker
    assert tracker.take_failures() == {TP: 1}
    tracker.register(TP, [1])
    tracker.ack(TP, 1)
    assert tracker.committable(TP) == 2


def test_acknowledging_many_at_once_equals_one_by_one() -> None:
    one, many = OffsetTracker(), OffsetTracker()
    for tracker in (one, many):
        tracker.register(TP, [0, 1, 2, 3, 5, 6])
    for offset in (1, 0, 3, 3):
        one.ack(TP, offset)
    many.ack_all(TP, [1, 0, 3, 3])  # in any order, one offset twice
    many.ack_all(("other", 0), [0])  # a partition not held: nothing
    assert (many.committable(TP), many.pending) == (one.committable(TP), one.pending) == (2, 3)
    many.ack_all(TP, [2, 5, 1])  # 1 acknowledged already: one by one
    assert (many.committable(TP), many.pending) == (6, 1)


def test_a_repeated_ack_all_held_behind_an_older_offset_counts_once() -> None:
    """The same run acknowledged twice (a settle served again) while an older offset is
    still outstanding: the second call changes nothing."""
    tracker = OffsetTracker()
    tracker.register(TP, [0, 1, 2])
    tracker.ack_all(TP, [1, 2])
    tracker.ack_all(TP, [1, 2])
    assert (tracker.committable(TP), tracker.pending) == (None, 1)
    tracker.ack_all(TP, [2, 1, 2])
    assert (tracker.committable(TP), tracker.pending) == (None, 1)
    tracker.ack_all(TP, [0])
    assert (tracker.committable(TP), tracker.pending) == (3, 0)
    tracker.ack_all(TP, [0, 1, 2])  # committed past already: nothing
    assert (tracker.committable(TP), tracker.pending) == (3, 0)


def test_ack_all_of_an_offset_never_registered_changes_nothing() -> None:
    tracker = OffsetTracker()
    tracker.register(TP, [0, 1])
    tracker.ack_all(TP, [7])
    assert (tracker.committable(TP), tracker.pending) == (None, 2)
    tracker.ack_all(TP, [0, 7])  # one stale among fresh ones: the fresh one still counts
    assert (tracker.committable(TP), tracker.pending) == (1, 1)
