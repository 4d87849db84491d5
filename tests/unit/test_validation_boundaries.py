"""Every validation rule at, just under and just over its limit, for currencies of every
exponent (0, 2 and 3 minor-unit digits).

The expectations come from the contract as ``validation_contract`` writes it down (DESIGN.md,
the module's docstring, ISO 4217 / ISO 3166-1); nothing is read from the code under test. Both
paths are held to it: ``validate`` per event and ``all_plausible`` over columns.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from streamer.scoring import validation
from streamer.scoring.validation import all_plausible, validate
from streamer.testing import sample_event
from tests.unit.validation_contract import (
    MAX_FUTURE_MS,
    MAX_ID_LENGTH,
    MCC_RANGE,
    MIN_EVENT_TIME_MS,
    OPTIONAL_IDS,
    REQUIRED_IDS,
    amount_limit,
)

EXPONENTS = {"JPY": 0, "EUR": 2, "BHD": 3}  # one currency per ISO 4217 exponent
NOW = 1_764_000_000_000

Case = tuple[str, Any, str | None]  # field, value, expected rejection class (None: passes)


def _amount_cases(currency: str) -> list[Case]:
    top = amount_limit(currency)
    return [
        ("amount_minor", -1, "AmountNotPositive"),
        ("amount_minor", 0, "AmountNotPositive"),
        ("amount_minor", 1, None),
        ("amount_minor", top - 1, None),
        ("amount_minor", top, None),
        ("amount_minor", top + 1, "AmountOutOfRange"),
        ("amount_minor", 10 * top, "AmountOutOfRange"),
        ("amount_minor", math.nan, "AmountNotFinite"),
        ("amount_minor", math.inf, "AmountNotFinite"),
        ("amount_minor", -math.inf, "AmountNotFinite"),
    ]


RULES: list[Case] = [
    ("event_time", MIN_EVENT_TIME_MS - 1, "EventTimeOutOfRange"),
    ("event_time", MIN_EVENT_TIME_MS, None),
    ("event_time", MIN_EVENT_TIME_MS + 1, None),
    ("event_time", NOW + MAX_FUTURE_MS - 1, None),
    ("event_time", NOW + MAX_FUTURE_MS, None),
    ("event_time", NOW + MAX_FUTURE_MS + 1, "EventTimeInFuture"),
    ("mcc", MCC_RANGE[0] - 1, "InvalidMcc"),
    ("mcc", MCC_RANGE[0], None),
    ("mcc", MCC_RANGE[0] + 1, None),
    ("mcc", MCC_RANGE[1] - 1, None),
    ("mcc", MCC_RANGE[1], None),
    ("mcc", MCC_RANGE[1] + 1, "InvalidMcc"),
    ("merchant_country", "DE", None),
    ("merchant_country", "DEU", "InvalidCountry"),
    ("merchant_country", "de", "InvalidCountry"),
    ("merchant_country", "dE", "InvalidCountry"),
    ("merchant_country", "De", "InvalidCountry"),
    ("merchant_country", "ÄÖ", "InvalidCountry"),
    ("merchant_country", "D", "InvalidCountry"),
    ("merchant_country", "", "InvalidCountry"),
    ("merchant_country", "D1", "InvalidCountry"),
    ("merchant_country", "Dé", "InvalidCountry"),
    ("currency", "eur", "UnknownCurrency"),
    ("currency", "EURO", "UnknownCurrency"),
    ("currency", "", "UnknownCurrency"),
    ("currency", "XXQ", "UnknownCurrency"),
    *[(f, "", "MissingId") for f in REQUIRED_IDS],
    *[(f, None, "MissingId") for f in REQUIRED_IDS],
    *[(f, "x", None) for f in REQUIRED_IDS],
    *[(f, "x" * (MAX_ID_LENGTH - 1), None) for f in (*REQUIRED_IDS, *OPTIONAL_IDS)],
    *[(f, "x" * MAX_ID_LENGTH, None) for f in (*REQUIRED_IDS, *OPTIONAL_IDS)],
    *[(f, "x" * (MAX_ID_LENGTH + 1), "IdTooLong") for f in (*REQUIRED_IDS, *OPTIONAL_IDS)],
    *[(f, "é" * (MAX_ID_LENGTH + 1), "IdTooLong") for f in (*REQUIRED_IDS, *OPTIONAL_IDS)],
    *[(f, "", None) for f in OPTIONAL_IDS],
    *[(f, None, None) for f in OPTIONAL_IDS],
]
CASES = [
    pytest.param(currency, field, value, expected, id=f"{currency}-{field}={value!r:.20}")
    for currency in EXPONENTS
    for field, value, expected in [*_amount_cases(currency), *RULES]
]


def _event(currency: str, field: str, value: Any) -> dict[str, Any]:
    base = sample_event(currency=currency, amount_minor=10 ** EXPONENTS[currency], event_time=NOW)
    return {**base, field: value}


@pytest.mark.parametrize(("currency", "field", "value", "expected"), CASES)
def test_validate_rejects_exactly_past_each_limit(
    currency: str, field: str, value: Any, expected: str | None
) -> None:
    rejection = validate(_event(currency, field, value), NOW)
    if expected is None:
        assert rejection is None
        return
    assert rejection is not None
    assert (rejection.error_class, rejection.stage) == (expected, "validate")
    assert "\n" not in rejection.message


@pytest.mark.parametrize(("currency", "field", "value", "expected"), CASES)
def test_the_batch_check_passes_a_batch_only_when_every_event_passes(
    currency: str, field: str, value: Any, expected: str | None
) -> None:
    events = [_event(currency, "transaction_id", "t0"), _event(currency, field, value)]
    columns = {name: [e[name] for e in events] for name in events[0]}
    assert all_plausible(columns, 2, NOW) is (expected is None)


def test_the_first_broken_rule_in_contract_order_names_the_rejection() -> None:
    """An event that breaks several rules is rejected for the first, in the documented
    order: ids, currency, amount, event time, mcc, country."""
    broken = {
        "transaction_id": "",
        "card_id": "x" * (MAX_ID_LENGTH + 1),
        "currency": "XXQ",
        "amount_minor": 0,
        "event_time": NOW + MAX_FUTURE_MS + 1,
        "mcc": 10_000,
        "merchant_country": "de",
    }
    order = [
        ("transaction_id", "MissingId"),
        ("card_id", "IdTooLong"),
        ("currency", "UnknownCurrency"),
        ("amount_minor", "AmountNotPositive"),
        ("event_time", "EventTimeInFuture"),
        ("mcc", "InvalidMcc"),
        ("merchant_country", "InvalidCountry"),
    ]
    event = sample_event(**broken)
    for field, expected in order:
        rejection = validate(event, NOW)
        assert rejection is not None
        assert rejection.error_class == expected
        assert field in rejection.message
        event[field] = sample_event(event_time=NOW)[field]
    assert validate(event, NOW) is None


def test_an_event_before_2000_is_out_of_range_not_in_the_future() -> None:
    rejection = validate(sample_event(event_time=MIN_EVENT_TIME_MS - 1), NOW)
    assert rejection is not None
    assert rejection.error_class == "EventTimeOutOfRange"
    assert "2000-01-01" in rejection.message


@pytest.mark.parametrize("amount", [math.nan, math.inf, -math.inf])
def test_a_non_finite_amount_is_named_and_never_passes_the_batch_check(amount: float) -> None:
    rejection = validate(sample_event(amount_minor=amount, event_time=NOW), NOW)
    assert rejection is not None
    assert rejection.error_class == "AmountNotFinite"
    assert str(amount) in rejection.message


def test_an_empty_batch_passes_the_batch_check() -> None:
    assert all_plausible({}, 0, NOW) is True


@pytest.mark.parametrize("missing", ["amount_minor", "currency", "mcc", "merchant_country"])
def test_a_batch_without_a_column_is_left_to_the_per_event_check(missing: str) -> None:
    event = sample_event(event_time=NOW)
    columns = {name: [value] for name, value in event.items() if name != missing}
    assert all_plausible(columns, 1, NOW) is False


@pytest.mark.parametrize(
    ("changes", "expected", "says"),
    [
        ({"transaction_id": ""}, "MissingId", "transaction_id is empty"),
        ({"merchant_id": None}, "MissingId", "merchant_id is empty"),
        ({"device_id": "x" * 1000}, "IdTooLong", "device_id has 1,000 characters, more than 128"),
        ({"currency": "EURO"}, "UnknownCurrency", "currency 'EURO' is not an ISO 4217 code"),
        ({"amount_minor": math.nan}, "AmountNotFinite", "amount_minor is nan"),
        ({"amount_minor": -math.inf}, "AmountNotFinite", "amount_minor is -inf"),
        ({"amount_minor": -5}, "AmountNotPositive", "amount_minor is -5"),
        (
            {"currency": "JPY", "amount_minor": 10_000_001},
            "AmountOutOfRange",
            "amount_minor 10000001 JPY exceeds 10,000,000",
        ),
        (
            {"event_time": NOW + 7_200_000},
            "EventTimeInFuture",
            f"event_time {NOW + 7_200_000} is 7200s ahead",
        ),
        (
            {"event_time": 0},
            "EventTimeOutOfRange",
            "event_time 0 is before 2000-01-01",
        ),
        ({"mcc": 10_000}, "InvalidMcc", "mcc 10000 is not a 4-digit merchant category code"),
        (
            {"merchant_country": "DEU"},
            "InvalidCountry",
            "merchant_country 'DEU' is not ISO 3166-1 alpha-2",
        ),
    ],
)
def test_a_rejection_says_which_field_and_value_in_one_line(
    changes: dict[str, Any], expected: str, says: str
) -> None:
    rejection = validate({**sample_event(event_time=NOW), **changes}, NOW)
    assert rejection is not None
    assert (rejection.error_class, rejection.message) == (expected, says)


@pytest.mark.parametrize("field", ["currency", "merchant_country"])
def test_an_oversized_code_is_quoted_cut_to_16_characters(field: str) -> None:
    value = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 400
    rejection = validate(sample_event(event_time=NOW, **{field: value}), NOW)
    assert rejection is not None
    assert f"{value[:16]!r}" in rejection.message
    assert len(rejection.message) < 100


PASSING_EDGES = [c for c in CASES if c.values[3] is None and c.values[1] != "merchant_country"]


@pytest.mark.parametrize(("currency", "field", "value", "expected"), PASSING_EDGES)
def test_a_value_on_its_limit_is_no_reason_to_reject_an_event_broken_elsewhere(
    currency: str, field: str, value: Any, expected: None
) -> None:
    """An event that breaks a later rule is rejected for that rule, not for a value that
    sits exactly on an earlier rule's limit (the walk ``validate`` falls back to)."""
    event = {**_event(currency, field, value), "merchant_country": "de"}
    rejection = validate(event, NOW)
    assert rejection is not None
    assert rejection.error_class == "InvalidCountry"


@pytest.mark.parametrize(
    ("amount", "expected"), [(-1.0, "AmountNotPositive"), (0.0, "AmountNotPositive")]
)
def test_a_finite_float_amount_is_judged_by_the_amount_rules_not_as_non_finite(
    amount: float, expected: str
) -> None:
    rejection = validate(sample_event(event_time=NOW, amount_minor=amount), NOW)
    assert rejection is not None
    assert rejection.error_class == expected


PASSING = [c for c in CASES if c.values[3] is None]


@pytest.mark.parametrize(("currency", "field", "value", "expected"), PASSING)
def test_an_event_within_every_limit_takes_the_shortcut(
    monkeypatch: pytest.MonkeyPatch, currency: str, field: str, value: Any, expected: None
) -> None:
    """The documented cost: a valid event (nearly every one) is answered by the one-
    expression shortcut, on every limit too; only a failing one pays for the walk."""

    def walk(event: Any, now_ms: int) -> None:
        raise AssertionError("a valid event was sent down the check-by-check walk")

    monkeypatch.setattr(validation, "_problem", walk)
    assert validate(_event(currency, field, value), NOW) is None


def test_a_batch_holding_every_alpha2_code_passes_the_batch_check() -> None:
    codes = [a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    events = [sample_event(event_time=NOW, merchant_country=code) for code in codes]
    columns = {name: [e[name] for e in events] for name in events[0]}
    assert all_plausible(columns, len(events), NOW) is True
