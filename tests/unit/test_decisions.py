"""Decisions from scores, at the edges of the threshold contract.

The contract (DESIGN.md, ``decide``'s docstring): thresholds are probabilities with
``0 <= review <= decline <= 1``, both inclusive; DECLINE from ``decline``, REVIEW from
``review``, else APPROVE; a NaN score is REVIEW. Expected decisions are written out here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamer.scoring.decisions import APPROVE, DECISIONS, DECLINE, REVIEW, counts, decide

NAN = math.nan


def test_codes_and_names_match_the_scored_event_schema() -> None:
    assert DECISIONS == ("APPROVE", "REVIEW", "DECLINE")
    assert (APPROVE, REVIEW, DECLINE) == (0, 1, 2)


@pytest.mark.parametrize(
    ("review", "decline", "scores", "expected"),
    [
        # review at its lowest (0): every score is at least reviewed
        (0.0, 0.5, [0.0, 1e-12, 0.4999, 0.5, 1.0, NAN], ["R", "R", "R", "D", "D", "R"]),
        # decline at its highest (1.0): only a certain score declines
        (0.1, 1.0, [0.0999, 0.1, 0.9999999, 1.0, NAN], ["A", "R", "R", "D", "R"]),
        # both at the extremes
        (0.0, 1.0, [0.0, 0.5, 1.0], ["R", "R", "D"]),
        # both at 0: every score declines
        (0.0, 0.0, [0.0, 0.3, 1.0, NAN], ["D", "D", "D", "R"]),
        # both at 1.0: nothing is reviewed, only 1.0 declines
        (1.0, 1.0, [0.0, 0.9999999, 1.0, NAN], ["A", "A", "D", "R"]),
        # ordinary thresholds, at, under and over each
        (0.1, 0.5, [0.0999, 0.1, 0.1001, 0.4999, 0.5, 0.5001], ["A", "R", "R", "R", "D", "D"]),
    ],
)
def test_decisions_at_the_threshold_edges(
    review: float, decline: float, scores: list[float], expected: list[str]
) -> None:
    codes = decide(np.array(scores), review, decline)
    assert codes.dtype == np.int8
    assert [DECISIONS[c][0] for c in codes] == expected


@pytest.mark.parametrize(
    ("review", "decline"),
    [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.3, 0.3), (0.0, 1e-9), (1.0 - 1e-9, 1.0)],
)
def test_thresholds_on_the_edges_of_zero_to_one_are_accepted(review: float, decline: float) -> None:
    decide(np.array([0.5]), review, decline)  # does not raise


@pytest.mark.parametrize(
    ("review", "decline"),
    [
        (-1e-9, 0.5),  # review just under 0
        (0.1, 1.0 + 1e-9),  # decline just over 1
        (0.5 + 1e-9, 0.5),  # review just over decline
        (-1e-9, 1.0 + 1e-9),
        (NAN, 0.5),
        (0.1, NAN),
    ],
)
def test_thresholds_off_the_contract_are_refused(review: float, decline: float) -> None:
    with pytest.raises(ValueError, match=r"need 0 <= review .* <= decline .* <= 1"):
        decide(np.array([0.5]), review, decline)


def test_a_list_of_scores_is_taken_like_an_array() -> None:
    assert decide([0.05, 0.2, 0.7], 0.1, 0.5).tolist() == [APPROVE, REVIEW, DECLINE]  # type: ignore[arg-type]


def test_counts_by_name_include_the_decisions_that_did_not_occur() -> None:
    codes = np.array([DECLINE, APPROVE, DECLINE, DECLINE], dtype=np.int8)
    assert counts(codes, DECISIONS) == {"APPROVE": 1, "REVIEW": 0, "DECLINE": 3}
    assert counts(np.array([], dtype=np.int8), DECISIONS) == dict.fromkeys(DECISIONS, 0)
    assert all(type(n) is int for n in counts(codes, DECISIONS).values())


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint8, np.uint64, np.int64])
def test_counts_take_codes_of_any_integer_type(dtype: type[np.integer]) -> None:
    codes = np.array([REVIEW, DECLINE, REVIEW], dtype=dtype)
    assert counts(codes, DECISIONS) == {"APPROVE": 0, "REVIEW": 2, "DECLINE": 1}
