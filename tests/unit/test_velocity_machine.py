"""Velocity state under restarts, rewinds and a stale second instance (Hypothesis machine).

One input partition (key = card id) grows while a scorer folds it in batches into a shared
store with the Redis store's compare-and-set semantics (``MemoryVelocityStore``). The
scorer can crash before or after its write (its consumer position stays: the batch comes
again), rewind further back (an aborted exactly-once transaction, a committed offset
reset), and a second instance can work from a stale snapshot of the store and its own
stale position (a rebalance handover) and write its states too.

The promises checked:
- every processing of an event that is not a replay of it (a first one, or one after a
  lost write) gives the features of its first processing, bit for bit;
- a REPLAY gives them too while its card's newest time is at most the lateness allowance
  past the event (the guarantee stated in ``streamer.features.velocity``; the stream here
  has no late events and no card reaches the log cap);
- the store's state of every card is always the state of one clean in-order fold of that
  card's events up to its ``high_position``; at the end, of all its events.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isnan

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from streamer.features.velocity import DAY_MS, HOUR_MS, LATENESS_MS, Outcome
from streamer.features.velocity_state import high_position
from streamer.features.velocity_store import MemoryVelocityStore
from tests.unit.velocity_model import Event, fold_events

CARDS = ("a", "b", "c")
T0 = 1_767_225_600_000
SMALL = st.one_of(st.just(0), st.integers(-LATENESS_MS, 0), st.integers(1, 20 * 60_000))
GAPS = st.one_of(  # mostly minutes; sometimes the hours and days that move entries to tiles
    SMALL,
    SMALL,
    SMALL,
    st.sampled_from([HOUR_MS, 24 * HOUR_MS, 25 * HOUR_MS]),
    st.integers(DAY_MS, 8 * DAY_MS),
)


@dataclass
class Instance:
    """A scorer: its consumer position (index of the next event) and, for a stale one,
    the store contents it read before the other instance moved on."""

    position: int
    states: dict[str, bytes] | None = None  # None: reads the shared store


class VelocityMachine(RuleBasedStateMachine):
    span = 0  # eviction by event time alone; the subclass adds a rewind span

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self.store = MemoryVelocityStore()
        self.scorer = Instance(0)
        self.stale: Instance | None = None
        self.first: dict[int, list[float]] = {}
        self.newest: dict[str, int] = {}

    # --- the input partition ----------------------------------------------------------------

    @rule(
        card=st.sampled_from(CARDS),
        gaps=st.lists(GAPS, min_size=1, max_size=6),
        repeat=st.integers(0, 5),
        merchant=st.sampled_from(["m1", "m2", "m3"]),
    )
    def append(self, card: str, gaps: list[int], repeat: int, merchant: str) -> None:
        """A burst of events for one card, out of order within the lateness allowance;
        with ``repeat`` 0 the first repeats an earlier transaction id of the card."""
        earlier = [e.txn for e in self.events if e.card == card]
        for gap in gaps:
            base = self.newest.get(card, T0)
            t = base + gap
            n = len(self.events)
            txn = earlier[n % len(earlier)] if earlier and repeat == 0 else f"{card}-{n}"
            repeat = 1
            amount = [0.5, 12.34, 99.99, 2500.0][n % 4]
            self.events.append(Event(card, txn, 2 * n + 1, t, amount, merchant, 1 + n % 3))
            self.newest[card] = max(base, t)

    # --- the scorer -------------------------------------------------------------------------

    def _fold(self, who: Instance, k: int, write: bool) -> None:
        chunk = self.events[who.position : who.position + k]
        if not chunk:
            return
        source = who.states if who.states is not None else self.store.states
        cards = {e.card for e in chunk}
        before = {c: high_position(source.get(c)) for c in cards}
        batch = fold_events(chunk, {c: source.get(c) for c in cards}, rewind_span=self.span)
        for e, row, outcome in zip(chunk, batch.values.tolist(), batch.outcomes, strict=True):
            self._check(e, row, int(outcome), before[e.card])
        if who.states is not None:
            who.states.update(batch.updates)
        if write:
            self.store.write(batch.updates, batch.positions)

    def _check(self, e: Event, row: list[float], outcome: int, high_before: int) -> None:
        assert outcome != Outcome.LATE  # the partition has no late events
        if e.pos not in self.first:
            assert outcome != Outcome.REPLAY, e
            self.first[e.pos] = row
            return
        if outcome == Outcome.REPLAY:
            newest = max(x.t for x in self.events if x.card == e.card and x.pos <= high_before)
            if e.t < newest - LATENESS_MS:
                event("replay beyond the lateness allowance (not checked)")
                return
            event("replay checked")
        assert _same(row, self.first[e.pos]), (e, row, self.first[e.pos])

    @rule(k=st.integers(1, 12))
    def process(self, k: int) -> None:
        """A batch: read, fold, write, commit."""
        self._fold(self.scorer, k, write=True)
        self.scorer.position = min(self.scorer.position + k, len(self.events))

    @rule(k=st.integers(1, 12), wrote=st.booleans())
    def crash(self, k: int, wrote: bool) -> None:
        """kill -9 after the fold, before (or after) the write, before the commit."""
        self._fold(self.scorer, k, write=wrote)

    @precondition(lambda self: self.scorer.position > 0)
    @rule(back=st.integers(1, 20))
    def rewind(self, back: int) -> None:
        """An aborted transaction or a reset: consume again from an earlier offset."""
        self.scorer.position = max(self.scorer.position - back, 0)

    @rule()
    def snapshot(self) -> None:
        """A second instance reads the store now and is left behind."""
        self.stale = Instance(self.scorer.position, dict(self.store.states))

    @precondition(lambda self: self.stale is not None)
    @rule(k=st.integers(1, 12))
    def stale_batch(self, k: int) -> None:
        """The stale instance scores a batch from its old state and writes it (CAS)."""
        assert self.stale is not None
        self._fold(self.stale, k, write=True)
        self.stale.position = min(self.stale.position + k, len(self.events))

    # --- convergence ------------------------------------------------------------------------

    @invariant()
    def store_holds_clean_folds(self) -> None:
        for card, blob in self.store.states.items():
            high = high_position(blob)
            prefix = [e for e in self.events if e.card == card and e.pos <= high]
            assert fold_events(prefix, rewind_span=self.span).updates[card] == blob, card

    def teardown(self) -> None:
        self._fold(self.scorer, len(self.events), write=True)
        for card in {e.card for e in self.events}:
            mine = [e for e in self.events if e.card == card]
            clean = fold_events(mine, rewind_span=self.span).updates[card]
            assert self.store.states[card] == clean, card


def _same(a: list[float], b: list[float]) -> bool:
    return all(x == y or (isnan(x) and isnan(y)) for x, y in zip(a, b, strict=True))


class SpanMachine(VelocityMachine):
    """The same with entries kept until 8 positions (4 events) behind the highest."""

    span = 8


MACHINE = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
VelocityMachine.TestCase.settings = MACHINE
SpanMachine.TestCase.settings = MACHINE
TestVelocityMachine = VelocityMachine.TestCase
TestSpanMachine = SpanMachine.TestCase
