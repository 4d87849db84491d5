"""The OpenAPI document's event schema and the checks agree: an event the document admits
is scored, one it refuses is refused (by the request model or by ``scoring.validation``),
at and around every limit, for currencies of every exponent.

The only exception is the rule no static schema can state: an event time more than an
hour ahead of the server's clock, which the document states in words and the 422 names.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from streamer.scoring import limits
from streamer.scoring.validation import validate
from streamer.serve.schema import to_event, transaction_request
from streamer.testing import sample_event

NOW = 1_764_000_000_000
DOCUMENT = transaction_request().model_json_schema()
ADMITS = jsonschema_rs.validator_for(DOCUMENT, validate_formats=True).is_valid


def _server_accepts(event: dict[str, Any]) -> str | None:
    """None when the server would score ``event``, else the class it would answer."""
    try:
        request = transaction_request().model_validate_json(json.dumps(event))
    except ValidationError:
        return "InvalidEvent"
    rejection = validate(to_event(request), NOW)
    return None if rejection is None else rejection.error_class


def _agree(event: dict[str, Any]) -> None:
    verdict = _server_accepts(event)
    if verdict in limits.RELATIVE_TO_NOW:
        return  # the one rule the document states only in words
    assert ADMITS(event) == (verdict is None), (verdict, event)


def _near(limit: int) -> list[int]:
    return [limit - 1, limit, limit + 1]


CURRENCIES = ("JPY", "EUR", "BHD")  # exponents 0, 2 and 3
EDGES: list[tuple[str, Any]] = [
    *[("amount_minor", v) for v in (-1, 0, 1, 10**7, 10**7 + 1, 10**9, 10**9 + 1, 10**10 + 1)],
    *[("mcc", v) for v in (*_near(limits.MIN_MCC), *_near(limits.MAX_MCC), 2**31 - 1)],
    *[("event_time", v) for v in (*_near(limits.MIN_EVENT_TIME_MS), 0, -1, NOW, 2**63 - 1)],
    ("event_time", "1999-12-31T23:59:59.999Z"),
    ("event_time", "2000-01-01T00:00:00Z"),
    ("event_time", "2000-01-01T00:30:00+01:00"),  # 1999 in UTC: the stated caveat
    ("event_time", "2000-01-01T00:00:00-01:00"),
    ("event_time", "1970-01-01T00:00:00Z"),
    ("event_time", "9999-12-31T23:59:59Z"),
    *[("currency", c) for c in ("EUR", "eur", "XXQ", "", "EURO", "JPY")],
    *[("merchant_country", c) for c in ("AA", "AZ", "ZA", "ZZ", "DE", "de", "D", "DEU", "")],
    *[("merchant_country", c) for c in ("D1", "ÄB", "DE\n", "@A", "A[", "`A", "A{")],
]
for name in (*limits.REQUIRED_IDS, *limits.OPTIONAL_IDS):
    EDGES += [(name, "x" * n) for n in (0, 1, limits.MAX_ID_LENGTH, limits.MAX_ID_LENGTH + 1)]
    EDGES += [(name, "é" * limits.MAX_ID_LENGTH), (name, "😀" * (limits.MAX_ID_LENGTH + 1))]


@pytest.mark.parametrize("currency", CURRENCIES)
@pytest.mark.parametrize(("field", "value"), EDGES)
def test_document_and_checks_agree_at_every_limit(currency: str, field: str, value: Any) -> None:
    event = {**sample_event(event_time=NOW), "currency": currency, field: value}
    if value == "2000-01-01T00:30:00+01:00":
        assert _server_accepts(event) == "EventTimeOutOfRange"  # as the description says
        assert ADMITS(event)
        return
    _agree(event)


def _values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(-(10**12), 10**11),
        st.integers(limits.MIN_EVENT_TIME_MS - 5, limits.MIN_EVENT_TIME_MS + 5),
        st.integers(NOW - 10**6, NOW + 10**6),
        st.sampled_from([0, 1, 9999, 10_000, 10**7, 10**9 + 1, 10**10, 2**53]),
        st.text(max_size=4),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=4),
        st.text(alphabet="@ABCDEFGHIJKLMNOPQRSTUVWXYZ[", min_size=2, max_size=2),
        st.sampled_from(limits.CURRENCIES),
        st.none(),
        st.booleans(),
    )


FIELDS = ("amount_minor", "currency", "mcc", "merchant_country", "event_time", "transaction_id")


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), _values(), max_size=3))
def test_document_and_checks_agree_on_drawn_events(changes: dict[str, Any]) -> None:
    _agree({**sample_event(event_time=NOW), **changes})


def test_every_validation_class_is_named_by_a_rule_the_document_states() -> None:
    described = json.dumps(DOCUMENT)
    for error_class in limits.VALIDATION_CLASSES:
        if error_class != "AmountNotFinite":  # a float never gets past the request model
            assert f"422 {error_class}" in described, error_class


def test_the_per_currency_amount_limit_is_stated_for_every_currency() -> None:
    stated: dict[str, int] = {}
    rule: dict[str, Any] = DOCUMENT
    while "if" in rule:
        limit = rule["then"]["properties"]["amount_minor"]["maximum"]
        stated |= dict.fromkeys(rule["if"]["properties"]["currency"]["enum"], limit)
        rule = rule["else"]
    last = rule["properties"]["amount_minor"]["maximum"]  # the chain's last else
    stated |= {code: last for code in limits.CURRENCIES if code not in stated}
    assert stated == {code: limits.max_amount_minor(code) for code in limits.CURRENCIES}
    assert last == DOCUMENT["properties"]["amount_minor"]["maximum"]


BREAKS: dict[str, dict[str, Any]] = {
    "MissingId": {"card_id": ""},
    "IdTooLong": {"device_id": "x" * (limits.MAX_ID_LENGTH + 1)},
    "UnknownCurrency": {"currency": "XXQ"},
    "AmountNotFinite": {"amount_minor": float("nan")},
    "AmountNotPositive": {"amount_minor": 0},
    "AmountOutOfRange": {"amount_minor": limits.max_amount_minor("EUR") + 1},
    "EventTimeInFuture": {"event_time": NOW + limits.MAX_FUTURE_MS + 1},
    "EventTimeOutOfRange": {"event_time": limits.MIN_EVENT_TIME_MS - 1},
    "InvalidMcc": {"mcc": limits.MAX_MCC + 1},
    "InvalidCountry": {"merchant_country": "de"},
}


@pytest.mark.parametrize("error_class", limits.VALIDATION_CLASSES)
def test_the_listed_classes_are_the_ones_validation_gives(error_class: str) -> None:
    event = {**sample_event(event_time=NOW, currency="EUR"), **BREAKS[error_class]}
    rejection = validate(event, NOW)
    assert rejection is not None
    assert rejection.error_class == error_class
