"""Decisions from scores: APPROVE, REVIEW or DECLINE by the model's thresholds. Pure."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

DECISIONS: Final = ("APPROVE", "REVIEW", "DECLINE")
"""Decision names by code, as in the ScoredEvent schema's ``Decision`` enum."""
APPROVE: Final = 0
REVIEW: Final = 1
DECLINE: Final = 2


def decide(scores: npt.NDArray[np.floating], review: float, decline: float) -> npt.NDArray[np.int8]:
    """Decision codes: DECLINE from ``decline``, REVIEW from ``review``, else APPROVE.

    Thresholds are inclusive. A NaN score (a broken model or input) goes to REVIEW, so it
    is neither waved through nor declined.
    """
    if not 0.0 <= review <= decline <= 1.0:
        raise ValueError(f"need 0 <= review ({review}) <= decline ({decline}) <= 1")
    scores = np.asarray(scores)
    codes = (scores >= review).astype(np.int8)
    codes += scores >= decline
    codes[np.isnan(scores)] = REVIEW
    return codes


def counts(codes: npt.NDArray[np.integer], names: tuple[str, ...]) -> dict[str, int]:
    """How many of each code, by name (one ``bincount``, not a loop over events)."""
    tally = np.bincount(np.asarray(codes, dtype=np.int64), minlength=len(names)).tolist()
    return {name: int(n) for name, n in zip(names, tally, strict=False)}
