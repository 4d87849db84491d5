"""Contain a failing batch: split it until only the events that fail on their own remain.

One event that makes the model (or feature assembly) raise must not cost its batch: the
batch is halved recursively, healthy halves are processed normally, and each event that
fails alone is returned with its error so it can be dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from streamer.errors import Stage

Rows = npt.NDArray[np.int64]
BatchFn = Callable[[Rows], tuple[npt.NDArray[np.float64], npt.NDArray[np.int8]]]


class StageError(Exception):
    """A batch function raised in ``stage`` (``enrich`` or ``score``)."""

    def __init__(self, stage: Stage, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.stage = stage
        self.error = error


def run_contained(
    run: BatchFn, rows: Rows
) -> tuple[Rows, npt.NDArray[np.float64], npt.NDArray[np.int8], list[tuple[int, StageError]]]:
    """(rows that succeeded, their scores, their statuses, [(row, failure)] for the rest)."""
    try:
        scores, statuses = run(rows)
    except StageError as failure:
        if rows.size == 1:
            return rows[:0], np.empty(0), np.empty(0, dtype=np.int8), [(int(rows[0]), failure)]
        half = rows.size // 2
        left = run_contained(run, rows[:half])
        right = run_contained(run, rows[half:])
        return (
            np.concatenate([left[0], right[0]]),
            np.concatenate([left[1], right[1]]),
            np.concatenate([left[2], right[2]]),
            left[3] + right[3],
        )
    return rows, scores, statuses, []
