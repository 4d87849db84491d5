"""Containment's outputs keep their types whatever the split, and a stage failure keeps
the original error (what a dead letter reports)."""

from __future__ import annotations

import numpy as np

from streamer.scoring.containment import Rows, StageError, run_contained


def _poisoned(bad: set[int]) -> object:
    def run(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        if bad & set(rows.tolist()):
            raise StageError("score", ValueError("poison"))
        return rows.astype(np.float64) / 10, np.zeros(rows.size, dtype=np.int8)

    return run


def test_a_split_batch_keeps_int8_statuses_and_float_scores() -> None:
    rows = np.arange(6, dtype=np.int64)
    ok, scores, statuses, failures = run_contained(_poisoned({2, 5}), rows)  # type: ignore[arg-type]
    assert ok.tolist() == [0, 1, 3, 4]
    assert scores.tolist() == [0.0, 0.1, 0.3, 0.4]
    assert (ok.dtype, scores.dtype, statuses.dtype) == (np.int64, np.float64, np.int8)
    assert [row for row, _ in failures] == [2, 5]


def test_a_batch_of_one_bad_row_returns_empty_typed_arrays() -> None:
    ok, scores, statuses, failures = run_contained(_poisoned({7}), np.array([7]))  # type: ignore[arg-type]
    assert (ok.size, scores.size, statuses.size) == (0, 0, 0)
    assert statuses.dtype == np.int8
    assert [(row, f.stage) for row, f in failures] == [(7, "score")]


def test_a_stage_error_keeps_the_stage_and_the_original_error() -> None:
    cause = KeyError("card-1")
    failure = StageError("enrich", cause)
    assert failure.stage == "enrich"
    assert failure.error is cause
    assert str(failure) == "KeyError: 'card-1'"
