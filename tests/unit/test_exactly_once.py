"""Exactly-once, driven the way the loop drives it: a transaction spans batches until its
time or count bound, commits on its own once the time bound passes (no input needed), on a
drain (rebalance, stop) and at once after a batch with partitions to re-read; a retried
batch, a broker abort or lost partitions abort it and rewind to where it started.

The fake transactions refuse what the broker refuses (a second ``begin`` while one is open,
a commit or an abort with none open), so every test also checks the call order.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.kafka.batch import Batch
from streamer.kafka.commit import ExactlyOnce
from streamer.kafka.transactions import FatalTransactionError, TransactionAbortedError
from streamer.observability.metrics import Telemetry
from streamer.observability.observer import Observer
from tests.unit.test_commit import TP, TP1, Consumer, Publisher

Offsets = dict[tuple[str, int], int]


class Transactions:
    """Records calls; ``abort_commit`` makes the broker abort the next commits, ``fenced``
    makes every commit fail for good."""

    def __init__(self, abort_commit: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.abort_commit = abort_commit
        self.fenced = False
        self.open = False

    def begin(self) -> None:
        assert not self.open, "begin while a transaction is open"
        self.open = True
        self.calls.append(("begin", None))

    def abort(self) -> None:
        if self.fenced:
            raise FatalTransactionError("fenced")
        assert self.open, "abort with no transaction open"
        self.open = False
        self.calls.append(("abort", None))

    def commit(self, offsets: Offsets, group_metadata: Any) -> None:
        assert self.open, "commit with no transaction open"
        self.calls.append(("commit", (dict(offsets), group_metadata)))
        if self.fenced:
            raise FatalTransactionError("fenced")
        if self.abort_commit:
            self.abort()
            raise TransactionAbortedError("broker aborted")
        self.open = False

    def commits(self) -> list[Offsets]:
        return [args[0] for name, args in self.calls if name == "commit"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exactly_once(
    *, max_s: float = 0.1, max_batches: int = 100, abort_commit: bool = False
) -> tuple[ExactlyOnce, Consumer, Transactions, Clock, Telemetry]:
    consumer, transactions, clock, telemetry = (
        Consumer(),
        Transactions(abort_commit),
        Clock(),
        Telemetry(),
    )
    strategy = ExactlyOnce(
        consumer,  # type: ignore[arg-type]
        Publisher(),  # type: ignore[arg-type]
        transactions,  # type: ignore[arg-type]
        drain_timeout_s=3.0,
        max_s=max_s,
        max_batches=max_batches,
        observer=telemetry,
        clock=clock,
    )
    return strategy, consumer, transactions, clock, telemetry


def process(strategy: ExactlyOnce, batch: Batch, *, retried: bool = False) -> None:
    strategy.begin(batch)
    if retried:
        strategy.retry(batch)
    strategy.end(batch)
    strategy.tick()


def test_a_transaction_spans_batches_up_to_the_count_bound() -> None:
    strategy, consumer, transactions, _, telemetry = exactly_once(max_batches=3)
    for offsets in ({TP: [5, 6]}, {TP1: [9]}, {TP: [7]}, {TP: [8]}):
        process(strategy, Batch(offsets=offsets))
    assert transactions.calls == [
        ("begin", None),
        ("commit", ({TP: 8, TP1: 10}, "group-metadata")),
        ("begin", None),
    ]
    assert (consumer.seeks, strategy.rewinds, strategy.committable(TP)) == ([], 0, None)
    assert telemetry.transactions == {"committed": 1}
    assert telemetry.transaction_batches.total == 3


def test_one_batch_per_transaction_when_the_count_bound_is_one() -> None:
    strategy, _, transactions, _, _ = exactly_once(max_batches=1)
    process(strategy, Batch(offsets={TP: [5, 6]}))
    process(strategy, Batch(offsets={TP: [7]}))
    assert transactions.commits() == [{TP: 7}, {TP: 8}]


def test_an_idle_stream_commits_once_the_time_bound_passes() -> None:
    strategy, _, transactions, clock, telemetry = exactly_once(max_s=0.1)
    process(strategy, Batch(offsets={TP: [5]}))
    clock.now += 0.099
    strategy.tick()  # no input, bound not reached: the output stays invisible for now
    assert transactions.commits() == []
    clock.now += 0.001
    strategy.tick()  # no input, bound reached: committed
    assert transactions.commits() == [{TP: 6}]
    clock.now += 10
    strategy.tick()  # nothing open: nothing to commit
    assert transactions.calls == [("begin", None), ("commit", ({TP: 6}, "group-metadata"))]
    assert telemetry.commit_seconds.counts.sum() == 1


def test_the_time_bound_counts_from_the_transactions_first_batch() -> None:
    strategy, _, transactions, clock, _ = exactly_once(max_s=0.1)
    process(strategy, Batch(offsets={TP: [5]}))
    clock.now += 0.06
    process(strategy, Batch(offsets={TP: [6]}))
    assert transactions.commits() == []
    clock.now += 0.06
    process(strategy, Batch(offsets={TP: [7]}))
    assert transactions.commits() == [{TP: 8}]


def test_a_drain_commits_the_open_transaction_then_flushes() -> None:
    consumer, publisher, transactions = Consumer(), Publisher(), Transactions()
    strategy = ExactlyOnce(consumer, publisher, transactions, drain_timeout_s=3.0)  # type: ignore[arg-type]
    strategy.drain()  # nothing open: nothing to commit
    assert (transactions.calls, publisher.flushes) == ([], [3.0])
    process(strategy, Batch(offsets={TP: [5, 6]}))
    strategy.drain()  # partitions revoked or the process stopping
    assert transactions.commits() == [{TP: 7}]
    assert publisher.flushes == [3.0, 3.0]
    assert consumer.commits == []  # offsets go with the transaction, never the consumer


def test_a_batch_that_failed_half_way_aborts_the_transaction_on_the_way_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy, consumer, transactions, _, telemetry = exactly_once()
    process(strategy, Batch(offsets={TP: [5]}))
    strategy.begin(Batch(offsets={TP: [6]}))  # some outputs queued, then an exception
    with caplog.at_level(logging.WARNING, logger="streamer.kafka.commit"):
        strategy.drain()  # the loop's ``finally``
    assert caplog.messages == ["aborting a transaction of 1 batches: a batch failed half way"]
    assert transactions.calls == [("begin", None), ("abort", None)]
    assert (telemetry.transactions, consumer.commits) == ({"aborted": 1}, [])
    strategy.drain()  # nothing open any more
    assert transactions.calls[-1] == ("abort", None)


def test_a_fenced_instance_stops_and_its_drain_touches_the_producer_no_more() -> None:
    consumer, publisher, transactions = Consumer(), Publisher(), Transactions()
    strategy = ExactlyOnce(consumer, publisher, transactions, max_batches=2)  # type: ignore[arg-type]
    process(strategy, Batch(offsets={TP: [5]}))
    transactions.fenced = True  # a successor with this transactional id started meanwhile
    with pytest.raises(FatalTransactionError):
        process(strategy, Batch(offsets={TP: [6]}))
    strategy.drain()  # the loop's ``finally``: a fenced producer's flush would fail too
    assert (publisher.flushes, consumer.seeks, strategy.rewinds) == ([], [], 0)


def test_a_fenced_abort_also_stops_the_instance_and_its_drain() -> None:
    consumer, publisher, transactions = Consumer(), Publisher(), Transactions()
    strategy = ExactlyOnce(consumer, publisher, transactions)  # type: ignore[arg-type]
    process(strategy, Batch(offsets={TP: [5]}))
    transactions.fenced = True
    with pytest.raises(FatalTransactionError):
        strategy.forget([TP1])  # lost partitions abort the transaction: fenced meanwhile
    strategy.drain()
    assert publisher.flushes == []


class Recorder(Observer):
    def __init__(self) -> None:
        self.seen: list[tuple[str, float, int]] = []

    def transaction(self, outcome: str, seconds: float, batches: int) -> None:
        self.seen.append((outcome, seconds, batches))


def test_each_transaction_reports_its_outcome_its_call_time_and_its_batches(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer, transactions, recorder = Consumer(), Transactions(), Recorder()
    strategy = ExactlyOnce(
        consumer,  # type: ignore[arg-type]
        Publisher(),  # type: ignore[arg-type]
        transactions,  # type: ignore[arg-type]
        max_batches=2,
        observer=recorder,
    )
    with caplog.at_level(logging.WARNING, logger="streamer.kafka.commit"):
        process(strategy, Batch(offsets={TP: [3]}))
        process(strategy, Batch(offsets={TP: [4]}), retried=True)  # aborted: + 1 rewind
        process(strategy, Batch(offsets={TP: [3]}))
        process(strategy, Batch(offsets={TP: [4]}, reread={TP1: 7}))  # committed: + 1
        process(strategy, Batch(offsets={TP: [5]}))
        strategy.forget([TP1])  # aborted: + 1
        transactions.abort_commit = True
        process(strategy, Batch(offsets={TP: [3]}))
        process(strategy, Batch(offsets={TP: [4]}))  # aborted by the broker: + 1
    assert [(o, b) for o, _, b in recorder.seen] == [
        ("aborted", 1),
        ("committed", 2),
        ("aborted", 1),
        ("aborted", 2),
    ]
    assert all(0 <= seconds < 1 for _, seconds, _ in recorder.seen)
    assert strategy.rewinds == 4
    assert caplog.messages == [
        "aborting a transaction of 1 batches: batch retried",
        "rewinding in[0] to 3: batch retried",
        "rewinding in[1] to 7: schema registry unavailable",
        "aborting a transaction of 1 batches: partitions lost",
        "rewinding in[0] to 5: partitions lost",
        "rewinding in[0] to 3: the transaction aborted",
    ]


def test_by_default_a_transaction_commits_after_250_ms_or_100_batches() -> None:
    consumer, transactions, clock = Consumer(), Transactions(), Clock()
    strategy = ExactlyOnce(consumer, Publisher(), transactions, clock=clock)  # type: ignore[arg-type]
    for offset in range(99):
        process(strategy, Batch(offsets={TP: [offset]}))
    clock.now += 0.249
    strategy.tick()
    assert transactions.commits() == []
    process(strategy, Batch(offsets={TP: [99]}))  # the 100th batch
    assert transactions.commits() == [{TP: 100}]
    process(strategy, Batch(offsets={TP: [100]}))
    clock.now += 0.25
    strategy.tick()
    assert transactions.commits()[-1] == {TP: 101}


def test_exactly_once_drains_within_thirty_seconds_by_default() -> None:
    publisher = Publisher()
    ExactlyOnce(Consumer(), publisher, Transactions()).drain()  # type: ignore[arg-type]
    assert publisher.flushes == [30.0]


def test_a_batch_with_partitions_to_reread_commits_at_once_and_seeks_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy, consumer, transactions, _, _ = exactly_once()
    process(strategy, Batch(offsets={TP: [4]}))
    with caplog.at_level(logging.WARNING, logger="streamer.kafka.commit"):
        process(strategy, Batch(offsets={TP: [5, 6], TP1: [9, 10]}, reread={TP1: 10}))
    assert transactions.commits() == [{TP: 7, TP1: 10}]
    assert (consumer.seeks, strategy.rewinds) == ([("in", 1, 10)], 1)
    assert caplog.messages == ["rewinding in[1] to 10: schema registry unavailable"]


def test_a_retried_batch_aborts_and_rewinds_the_whole_transaction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy, consumer, transactions, _, telemetry = exactly_once()
    process(strategy, Batch(offsets={TP: [5, 6]}))
    process(strategy, Batch(offsets={TP: [7]}))
    with caplog.at_level(logging.WARNING, logger="streamer.kafka.commit"):
        process(strategy, Batch(offsets={TP: [8], TP1: [3]}), retried=True)
    assert transactions.calls == [("begin", None), ("abort", None)]
    assert sorted(consumer.seeks) == [("in", 0, 5), ("in", 1, 3)]
    assert strategy.rewinds == 2
    assert sorted(caplog.messages) == [
        "aborting a transaction of 2 batches: batch retried",
        "rewinding in[0] to 5: batch retried",
        "rewinding in[1] to 3: batch retried",
    ]
    assert telemetry.transactions == {"aborted": 1}
    process(strategy, Batch(offsets={TP: [5]}))  # a new transaction starts clean
    strategy.drain()
    assert transactions.commits() == [{TP: 6}]


def test_a_transaction_the_broker_aborts_is_read_again_from_its_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    strategy, consumer, _, _, telemetry = exactly_once(max_batches=2, abort_commit=True)
    process(strategy, Batch(offsets={TP: [5, 6], TP1: [1]}))
    with caplog.at_level(logging.WARNING, logger="streamer.kafka.commit"):
        process(strategy, Batch(offsets={TP: [7], TP1: [2]}))
    assert sorted(consumer.seeks) == [("in", 0, 5), ("in", 1, 1)]
    assert strategy.rewinds == 2
    assert sorted(caplog.messages) == [
        "rewinding in[0] to 5: the transaction aborted",
        "rewinding in[1] to 1: the transaction aborted",
    ]
    assert telemetry.transactions == {"aborted": 1}


def test_lost_partitions_abort_the_transaction_and_the_kept_ones_are_read_again() -> None:
    strategy, consumer, transactions, _, _ = exactly_once()
    process(strategy, Batch(offsets={TP: [5, 6], TP1: [9]}))
    strategy.forget([TP1])  # lost: another member owns it; its offsets must not commit
    assert transactions.calls == [("begin", None), ("abort", None)]
    assert (consumer.seeks, strategy.rewinds) == ([("in", 0, 5)], 1)
    strategy.forget([TP])  # nothing open: nothing to abort
    assert transactions.calls[-1] == ("abort", None)


batches = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from([TP, TP1]), st.integers(1, 4), min_size=1),
        st.floats(0, 0.2),  # seconds before the next step
        st.sampled_from(["ok", "ok", "ok", "retry", "idle"]),
    ),
    max_size=30,
)


@given(batches, st.integers(1, 5), st.booleans())
def test_commits_never_skip_or_repeat_an_input(
    steps: list[tuple[dict[tuple[str, int], int], float, str]], max_batches: int, aborts: bool
) -> None:
    """The consumer as the strategy leaves it (reading on, or sought back) and the offsets
    it commits: every committed range was read in that transaction, from the last committed
    offset on (nothing skipped, nothing twice), and a drain leaves nothing open."""
    strategy, consumer, transactions, clock, _ = exactly_once(
        max_s=0.1, max_batches=max_batches, abort_commit=aborts
    )
    position = {TP: 0, TP1: 0}
    committed = {TP: 0, TP1: 0}
    read: dict[tuple[str, int], list[int]] = {TP: [], TP1: []}  # in the open transaction
    for counts, pause, kind in steps:
        clock.now += pause
        seeks, calls = len(consumer.seeks), len(transactions.calls)
        if kind == "idle":
            strategy.tick()
        else:
            offsets = {tp: list(range(position[tp], position[tp] + n)) for tp, n in counts.items()}
            for tp, o in offsets.items():
                position[tp] += len(o)
                read[tp] += o
            process(strategy, Batch(offsets=offsets), retried=kind == "retry")
        for topic, partition, offset in consumer.seeks[seeks:]:
            position[topic, partition] = offset
        ended = [name for name, _ in transactions.calls[calls:] if name in ("commit", "abort")]
        if ended:
            if ended[-1] == "commit":
                for tp, offset in transactions.commits()[-1].items():
                    assert read[tp][0] == committed[tp], "an input skipped or read twice"
                    assert read[tp] == list(range(committed[tp], offset))
                    committed[tp] = offset
            assert position == committed, "the consumer must go on from what is committed"
            read = {TP: [], TP1: []}
    strategy.drain()
    assert not transactions.open
