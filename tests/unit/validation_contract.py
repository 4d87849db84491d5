"""The validation contract, written down from the documents rather than read from the code:
limits (DESIGN.md, ``streamer.scoring.validation``'s docstring), ISO 4217 exponents and
ISO 3166-1 alpha-2 shape, and the order in which rules are checked. Tests compare the code
with ``expected_rejection``, an independent statement of the same rules."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

MAX_AMOUNT_MAJOR = 10_000_000  # ten million major units
MAX_FUTURE_MS = 60 * 60 * 1000  # one hour of producer clock skew
MIN_EVENT_TIME_MS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_ID_LENGTH = 128  # characters
MCC_RANGE = (0, 9999)  # four decimal digits
EXPONENTS = {"JPY": 0, "KRW": 0, "EUR": 2, "USD": 2, "BHD": 3, "KWD": 3}  # ISO 4217
REQUIRED_IDS = ("transaction_id", "card_id", "merchant_id")
OPTIONAL_IDS = ("terminal_id", "acquirer_id", "device_id")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def amount_limit(currency: str) -> int:
    """The largest amount in minor units: ten million major units."""
    return MAX_AMOUNT_MAJOR * 10 ** EXPONENTS[currency]


def expected_rejection(event: Mapping[str, Any], now_ms: int) -> str | None:
    """The rejection class the contract gives ``event`` (schema-typed values, currencies of
    ``EXPONENTS`` or unknown ones), or None: the first rule broken, in the documented order."""
    for name in REQUIRED_IDS:
        if event[name] is None or event[name] == "":
            return "MissingId"
    for name in (*REQUIRED_IDS, *OPTIONAL_IDS):
        if event.get(name) is not None and len(event[name]) > MAX_ID_LENGTH:
            return "IdTooLong"
    if event["currency"] not in EXPONENTS:
        return "UnknownCurrency"
    amount = event["amount_minor"]
    if isinstance(amount, float) and not math.isfinite(amount):
        return "AmountNotFinite"
    if amount <= 0:
        return "AmountNotPositive"
    if amount > amount_limit(event["currency"]):
        return "AmountOutOfRange"
    if event["event_time"] > now_ms + MAX_FUTURE_MS:
        return "EventTimeInFuture"
    if event["event_time"] < MIN_EVENT_TIME_MS:
        return "EventTimeOutOfRange"
    if not MCC_RANGE[0] <= event["mcc"] <= MCC_RANGE[1]:
        return "InvalidMcc"
    country = event["merchant_country"]
    if len(country) != 2 or not set(country) <= _UPPER:
        return "InvalidCountry"
    return None
