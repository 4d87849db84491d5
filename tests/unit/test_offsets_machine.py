"""The offset tracker against an adversarial consumer and producer (Hypothesis state machine).

The promise of at-least-once: an input offset is committable only once an output for it
exists on the broker, whatever the order in which delivery reports, failures, rewinds and
revocations arrive. Delivery reports are modelled as they really come: each produce has
exactly one outcome, reports arrive in any order, and reports from before a rewind or a
revocation may arrive after it (the loop does not flush before seeking), so a stale report
can name an offset that has been consumed again since.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from streamer.kafka.offsets import OffsetTracker, TopicPartition

PARTITIONS: list[TopicPartition] = [("in", 0), ("in", 1)]
partitions = st.sampled_from(PARTITIONS)


@dataclass
class Delivery:
    """One produced output, its report not received yet."""

    tp: TopicPartition
    offset: int
    registration: int


@dataclass
class PartitionModel:
    """What the consumer handed over, and what the broker acknowledged, for one partition."""

    log: list[int] = field(default_factory=list)  # offsets of the messages written so far
    position: int = 0  # the consumer hands over the next message at or after this offset
    live: dict[int, tuple[int, bool]] = field(default_factory=dict)  # offset → (reg, acked)
    failed: set[int] = field(default_factory=set)  # failed since the last take_failures
    outputs: set[int] = field(default_factory=set)  # offsets with an acknowledged output
    consumed: set[int] = field(default_factory=set)  # every offset ever handed over
    last_commit: int | None = None  # the group's committed offset (survives revocation)
    last_committable: int | None = None  # to check monotonicity within one assignment

    def unacked(self) -> list[int]:
        return [o for o, (_, acked) in self.live.items() if not acked]


class OffsetTrackerMachine(RuleBasedStateMachine):
    """Drives an OffsetTracker and a model of the consumer/producer around it."""

    def __init__(self) -> None:
        super().__init__()
        self.tracker = OffsetTracker()
        self.parts = {tp: PartitionModel() for tp in PARTITIONS}
        self.in_flight: list[Delivery] = []
        self.registrations = 0

    @rule(tp=partitions, count=st.integers(1, 6), gaps=st.lists(st.integers(1, 3), max_size=6))
    def register(self, tp: TopicPartition, count: int, gaps: list[int]) -> None:
        """The consumer hands over up to ``count`` messages from its position; new messages
        are appended to the log with ``gaps`` between offsets (transaction markers, compaction).
        """
        part = self.parts[tp]
        for gap in gaps:
            part.log.append((part.log[-1] if part.log else -1) + gap)
        offsets = [o for o in part.log if o >= part.position][:count]
        if not offsets:
            return
        self.tracker.register(tp, offsets)
        for o in offsets:
            self.registrations += 1
            part.live[o] = (self.registrations, False)
            self.in_flight.append(Delivery(tp, o, self.registrations))
        part.consumed.update(offsets)
        part.position = offsets[-1] + 1

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(0, 10**6), delivered=st.booleans())
    def report(self, pick: int, delivered: bool) -> None:
        """One delivery report arrives, possibly stale (from before a rewind or revocation)."""
        d = self.in_flight.pop(pick % len(self.in_flight))
        part = self.parts[d.tp]
        if delivered:
            self.tracker.ack(d.tp, d.offset)
            part.outputs.add(d.offset)
            if d.offset in part.live:
                part.live[d.offset] = (part.live[d.offset][0], True)
        else:
            self.tracker.fail(d.tp, d.offset)
            if d.offset in part.live:
                part.failed.add(d.offset)

    @precondition(lambda self: self.in_flight)
    @rule(tp=partitions, picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
    def report_many(self, tp: TopicPartition, picks: list[int]) -> None:
        """Several outputs of one partition known acknowledged at once (``ack_all``, as the
        publisher settles a batch), stale ones and one offset twice included."""
        mine = [d for d in self.in_flight if d.tp == tp]
        if not mine:
            return
        chosen = [mine[p % len(mine)] for p in picks]  # may pick one delivery twice
        taken = {id(d) for d in chosen}
        self.in_flight = [d for d in self.in_flight if id(d) not in taken]
        self.tracker.ack_all(tp, [d.offset for d in chosen])
        part = self.parts[tp]
        for d in chosen:
            part.outputs.add(d.offset)
            if d.offset in part.live:
                part.live[d.offset] = (part.live[d.offset][0], True)

    @rule(tp=partitions, picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
    def report_many_again(self, tp: TopicPartition, picks: list[int]) -> None:
        """A run of acknowledgements served again (a settle repeated, a report duplicated):
        offsets with an output already, some held behind an older unacknowledged one, some
        committed past. Each was counted when it first arrived: only an offset consumed
        again since (after a rewind or revocation) is newly acknowledged by it."""
        part = self.parts[tp]
        done = sorted(part.outputs)
        if not done:
            return
        chosen = [done[p % len(done)] for p in picks]
        self.tracker.ack_all(tp, chosen)
        for offset in chosen:
            if offset in part.live:
                part.live[offset] = (part.live[offset][0], True)

    @rule()
    def rewind(self) -> None:
        """The loop takes the failures and seeks each partition back."""
        rewinds = self.tracker.take_failures()
        for tp, part in self.parts.items():
            must_redo = [o for o in part.failed if not part.live.get(o, (0, True))[1]]
            if must_redo:
                assert tp in rewinds, f"{tp}: failed outputs {must_redo} would never be redone"
            if tp in rewinds:
                to = rewinds[tp]
                assert to in part.failed, f"{tp}: rewound to {to}, which never failed"
                assert to <= min(must_redo, default=to)
                part.live = {o: v for o, v in part.live.items() if o < to}
                part.position = to
            part.failed.clear()

    @rule()
    def commit(self) -> None:
        """The loop commits what advanced."""
        for tp, offset in self.tracker.commits().items():
            part = self.parts[tp]
            assert offset == self.tracker.committable(tp)
            assert offset != part.last_commit, f"{tp}: commit {offset} reported twice"
            part.last_commit = offset

    @rule(tp=partitions)
    def revoke(self, tp: TopicPartition) -> None:
        """The partition is revoked or lost, then assigned again from the committed offset."""
        self.tracker.forget([tp])
        part = self.parts[tp]
        part.live.clear()
        part.failed.clear()
        part.last_committable = None
        part.position = part.last_commit if part.last_commit is not None else 0

    @rule(tp=partitions)
    def deliver_everything(self, tp: TopicPartition) -> None:
        """Every output of ``tp`` still in flight is acknowledged: with no failure outstanding,
        the commit reaches the end of what was consumed."""
        part = self.parts[tp]
        current = {reg for reg, _ in part.live.values()}
        mine = [d for d in self.in_flight if d.registration in current]
        self.in_flight = [d for d in self.in_flight if d.registration not in current]
        for d in mine:
            self.tracker.ack(tp, d.offset)
            part.outputs.add(d.offset)
            part.live[d.offset] = (d.registration, True)
        if part.live and not part.unacked():
            committable = self.tracker.committable(tp)
            assert committable is not None
            assert committable >= max(part.live) + 1

    @invariant()
    def never_committable_past_a_missing_output(self) -> None:
        for tp, part in self.parts.items():
            committable = self.tracker.committable(tp)
            if committable is None:
                continue
            missing = sorted(o for o in part.consumed - part.outputs if o < committable)
            assert not missing, f"{tp}: committable {committable} but no output for {missing}"

    @invariant()
    def never_committable_past_a_live_unacknowledged_offset(self) -> None:
        for tp, part in self.parts.items():
            committable = self.tracker.committable(tp)
            if committable is not None:
                assert all(o >= committable for o in part.unacked()), (tp, committable)

    @invariant()
    def committable_never_moves_back(self) -> None:
        for tp, part in self.parts.items():
            committable = self.tracker.committable(tp)
            if part.last_committable is not None:
                assert committable is not None
                assert committable >= part.last_committable
            part.last_committable = committable

    @invariant()
    def pending_counts_live_unacknowledged_offsets(self) -> None:
        expected = sum(len(part.unacked()) for part in self.parts.values())
        assert self.tracker.pending == expected


OffsetTrackerMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None
)
test_offset_tracker_machine = OffsetTrackerMachine.TestCase
