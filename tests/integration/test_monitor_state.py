"""The monitor's join state on a real Redis converges whatever the order: scores and
labels in any order, replays, re-scores, duplicate and contradicting labels, two monitor
processes at once. A Hypothesis state machine checks the stored joins and counts against
a plain model of "first served score, first label, once per transaction"."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import numpy as np
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from streamer.monitor.records import HOUR_MS, ScoredRow, pack_label, pack_scored
from streamer.monitor.report import read_window
from streamer.monitor.state import JoinState, LabelWrite, ScoredWrite

IDS = [str(uuid.UUID(int=i * 7919 + 1, version=4)) for i in range(5)] + ["order 42/b"]
DAY_MS = 86_400_000
BASE_HOUR = int(time.time()) * 1000 // HOUR_MS - 5  # recent: older buckets expire at once
EVENT_TIME = {t: (BASE_HOUR + i % 3) * HOUR_MS + i for i, t in enumerate(IDS)}


def _scored(t: str, version: int, score: float) -> ScoredWrite:
    row = ScoredRow(
        t, EVENT_TIME[t], 500, "EUR", score, "REVIEW" if score > 0.5 else "APPROVE", version
    )
    return ScoredWrite(t, pack_scored(row), row.hour, version)


def _label(t: str, kind: int, delay_days: int) -> LabelWrite:
    return LabelWrite(t, pack_label(EVENT_TIME[t] + delay_days * DAY_MS, kind, 1))


def make_machine(client: redis.Redis, new_prefix: Callable[[], str]) -> type[RuleBasedStateMachine]:
    class JoinMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            prefix = new_prefix()
            self.monitors = [JoinState(client, prefix, 120 * DAY_MS) for _ in range(2)]
            self.scored: dict[str, ScoredWrite] = {}
            self.labels: dict[str, LabelWrite] = {}

        @rule(
            monitor=st.integers(0, 1),
            batch=st.lists(
                st.tuples(st.sampled_from(IDS), st.integers(1, 2), st.sampled_from([0.1, 0.9])),
                min_size=1,
                max_size=4,
            ),
        )
        def score(self, monitor: int, batch: list[tuple[str, int, float]]) -> None:
            writes = [_scored(*item) for item in batch]
            self.monitors[monitor].add_scored(writes)
            for w in writes:
                self.scored.setdefault(w.transaction_id, w)

        @rule(
            monitor=st.integers(0, 1),
            batch=st.lists(
                st.tuples(st.sampled_from(IDS), st.integers(0, 2), st.integers(1, 60)),
                min_size=1,
                max_size=4,
            ),
        )
        def label(self, monitor: int, batch: list[tuple[str, int, int]]) -> None:
            writes = [_label(*item) for item in batch]
            self.monitors[monitor].add_labels(writes)
            for w in writes:
                self.labels.setdefault(w.transaction_id, w)

        @invariant()
        def joins_are_first_score_and_first_label_once(self) -> None:
            state = self.monitors[0]
            window = read_window(state, (BASE_HOUR - 1) * HOUR_MS, (BASE_HOUR + 4) * HOUR_MS)
            stored = {t: window.joined[i].tobytes() for i, t in enumerate(window.transaction_ids)}
            expected = {
                t: self.scored[t].packed + self.labels[t].packed
                for t in self.scored
                if t in self.labels
            }
            assert stored == expected
            counts: dict[int, int] = {}
            for w in self.scored.values():
                counts[w.version_id] = counts.get(w.version_id, 0) + 1
            assert window.scored == counts
            assert len(window.transaction_ids) == len(set(window.transaction_ids))
            assert window.joined.dtype.itemsize == 43
            assert np.all(window.joined["event_time"] >= BASE_HOUR * HOUR_MS)

    return JoinMachine


def test_the_join_state_converges(redis_client: redis.Redis, redis_prefix: str) -> None:
    runs = iter(range(1_000_000))
    machine = make_machine(redis_client, lambda: f"{redis_prefix}{next(runs)}:")
    machine.TestCase.settings = settings(max_examples=60, stateful_step_count=12, deadline=None)
    run_state_machine_as_test(machine)
