"""Batch containment: whatever rows poison a batch, each row is scored or failed exactly once.

The batch function is adversarial within the one rule containment relies on: a (sub-)batch
fails if and only if it holds a bad row. Which stage it blames and what the error says are
chosen by Hypothesis; the scores of healthy rows depend on the row, so misalignment shows.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from streamer.errors import Stage
from streamer.scoring.containment import BatchFn, Rows, StageError, run_contained

STAGES: tuple[Stage, ...] = ("enrich", "score")


@st.composite
def batches(draw: st.DrawFn) -> tuple[Rows, frozenset[int], dict[int, Stage]]:
    """Unique row indices in any order, a subset of them bad, each bad row with its stage."""
    rows = draw(st.lists(st.integers(0, 10_000), unique=True, max_size=300))
    bad = draw(st.sets(st.sampled_from(rows))) if rows else set()
    stages = {row: draw(st.sampled_from(STAGES)) for row in sorted(bad)}
    return np.asarray(rows, dtype=np.int64), frozenset(bad), stages


def score_of(rows: Rows) -> np.ndarray:
    return rows.astype(np.float64) / 10_000.0


def poisoned(bad: frozenset[int], stages: dict[int, Stage], calls: list[int]) -> BatchFn:
    """A batch function that fails iff its batch holds a bad row, blaming one of them."""

    def run(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        calls.append(rows.size)
        culprits = [int(r) for r in rows if int(r) in bad]
        if culprits:
            first = culprits[0]
            raise StageError(stages[first], ValueError(f"row {first} is poison"))
        return score_of(rows), (rows % 4).astype(np.int8)

    return run


@given(batches())
def test_every_row_is_scored_or_failed_exactly_once(
    batch: tuple[Rows, frozenset[int], dict[int, Stage]],
) -> None:
    rows, bad, stages = batch
    calls: list[int] = []
    ok, scores, statuses, failures = run_contained(poisoned(bad, stages, calls), rows)

    failed = [row for row, _ in failures]
    assert sorted([*ok.tolist(), *failed]) == sorted(rows.tolist())  # each row exactly once
    assert sorted(failed) == sorted(bad)
    assert ok.tolist() == [r for r in rows.tolist() if r not in bad]  # order kept
    assert scores.shape == ok.shape == statuses.shape
    np.testing.assert_array_equal(scores, score_of(ok))  # scores aligned with their rows
    np.testing.assert_array_equal(statuses, (ok % 4).astype(np.int8))
    for row, failure in failures:
        assert failure.stage == stages[row]  # blamed on what failed when the row ran alone
        assert f"row {row} is poison" in str(failure)


@given(batches())
def test_containment_costs_few_model_runs(
    batch: tuple[Rows, frozenset[int], dict[int, Stage]],
) -> None:
    """A healthy batch runs once; each bad row costs at most two runs per halving level."""
    rows, bad, stages = batch
    calls: list[int] = []
    run_contained(poisoned(bad, stages, calls), rows)
    depth = math.ceil(math.log2(rows.size)) if rows.size > 1 else 0
    assert len(calls) <= 1 + 2 * len(bad) * depth
    if not bad:
        assert calls == [rows.size]
