"""``validate`` answers most events with one expression (``_plausible``) and the rest with
the check-by-check walk (``_problem``). Both must give the contract's answer: events are
drawn around every bound the rules have, and the expected rejection comes from
``validation_contract.expected_rejection``, the rules written down independently of either
path."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.scoring.validation import validate
from streamer.testing import sample_event
from tests.unit.validation_contract import (
    EXPONENTS,
    MAX_FUTURE_MS,
    MAX_ID_LENGTH,
    MIN_EVENT_TIME_MS,
    amount_limit,
    expected_rejection,
)

NOW = 1_764_000_000_000


def _ids() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(min_size=0, max_size=3),
        st.integers(MAX_ID_LENGTH - 1, MAX_ID_LENGTH + 1).map(lambda n: "x" * n),
        st.none(),
    )


LIMITS = sorted({amount_limit(c) + d for c in EXPONENTS for d in (-1, 0, 1)})


EDGE_TIMES = (MIN_EVENT_TIME_MS - 1, MIN_EVENT_TIME_MS, 0, -1, NOW, NOW + MAX_FUTURE_MS)
EVENT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "transaction_id": _ids(),
    "card_id": _ids(),
    "merchant_id": _ids(),
    "terminal_id": _ids(),
    "acquirer_id": _ids(),
    "device_id": _ids(),
    "currency": st.sampled_from([*sorted(EXPONENTS), "XXQ", "", "eur"]),
    "amount_minor": st.one_of(
        st.integers(-2, 3),
        st.sampled_from([*LIMITS, 10**11, 2**63 - 1]),
        st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    ),
    "event_time": st.one_of(
        st.sampled_from([*EDGE_TIMES, NOW + MAX_FUTURE_MS + 1]),
        st.integers(),
    ),
    "mcc": st.one_of(st.sampled_from([-1, 0, 1, 5411, 9998, 9999, 10_000]), st.integers()),
    "merchant_country": st.sampled_from(["DE", "de", "D", "DEU", "D1", "ÄÖ", "", "ZZ", "Dé"]),
}


@settings(max_examples=800, deadline=None)  # the limits themselves: test_validation_boundaries
@given(
    changes=st.dictionaries(st.sampled_from(sorted(EVENT_FIELDS)), st.none(), max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({k: EVENT_FIELDS[k] for k in keys})
    ),
    dropped=st.sets(st.sampled_from(["terminal_id", "acquirer_id", "device_id"])),
)
def test_the_shortcut_agrees_with_the_checks(changes: dict[str, Any], dropped: set[str]) -> None:
    event = sample_event(**changes)
    for field in dropped:
        event.pop(field)
    rejection = validate(event, NOW)
    assert (rejection and rejection.error_class) == expected_rejection(event, NOW)
