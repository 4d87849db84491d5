"""The limits a transaction event must keep, written down once.

``scoring.validation`` enforces them on every event (stream, files and API alike) and the
scoring API's OpenAPI document states them (``serve.contract``), both reading these names,
so the document a client is generated from cannot drift from what the server rejects.
Each limit names the rejection class (``Rejection.error_class``) that enforces it.
"""

from __future__ import annotations

from typing import Final

from streamer.features.reference import KNOWN_CURRENCIES, currency_exponent

MAX_AMOUNT_MAJOR: Final = 10_000_000
"""Ten million in major units: above any single card payment (``AmountOutOfRange``)."""
MAX_FUTURE_MS: Final = 3_600_000
"""Clock skew tolerated between producers and us (``EventTimeInFuture``)."""
MIN_EVENT_TIME_MS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z: no earlier event is a real card payment (``EventTimeOutOfRange``)."""
MAX_ID_LENGTH: Final = 128
"""Characters; UUIDs are 36, card tokens and terminal ids well under 64 (``IdTooLong``)."""
MIN_MCC: Final = 0
MAX_MCC: Final = 9999
"""ISO 18245 merchant category codes are four digits (``InvalidMcc``)."""
REQUIRED_IDS: Final = ("transaction_id", "card_id", "merchant_id")
"""Ids that must be non-empty (``MissingId``) and at most ``MAX_ID_LENGTH`` long."""
OPTIONAL_IDS: Final = ("terminal_id", "acquirer_id", "device_id")
"""Ids that may be null or empty, and at most ``MAX_ID_LENGTH`` long when given."""
COUNTRY_PATTERN: Final = "^[A-Z]{2}$"
"""ISO 3166-1 alpha-2 of ``merchant_country``: two ASCII capitals (``InvalidCountry``)."""
CURRENCIES: Final = tuple(sorted(KNOWN_CURRENCIES))
"""ISO 4217 codes accepted as ``currency`` (``UnknownCurrency``)."""


def max_amount_minor(currency: str) -> int:
    """The largest ``amount_minor`` of ``currency``: ``MAX_AMOUNT_MAJOR`` in its minor units
    (an exact integer: 10**7 JPY, 10**9 EUR cents, 10**10 BHD fils)."""
    exponent: int = currency_exponent(currency)
    return int(MAX_AMOUNT_MAJOR * 10**exponent)


def currencies_by_max_amount() -> dict[int, tuple[str, ...]]:
    """The known currencies grouped by their largest ``amount_minor`` (one group per
    ISO 4217 exponent), for a document that states the per-currency limit."""
    groups: dict[int, list[str]] = {}
    for code in CURRENCIES:
        groups.setdefault(max_amount_minor(code), []).append(code)
    return {limit: tuple(codes) for limit, codes in sorted(groups.items())}


VALIDATION_CLASSES: Final = (
    "MissingId",
    "IdTooLong",
    "UnknownCurrency",
    "AmountNotFinite",
    "AmountNotPositive",
    "AmountOutOfRange",
    "EventTimeInFuture",
    "EventTimeOutOfRange",
    "InvalidMcc",
    "InvalidCountry",
)
"""Every rejection class ``scoring.validation`` gives, in the order it checks."""
RELATIVE_TO_NOW: Final = ("EventTimeInFuture",)
"""Classes of rules no static schema can state (they move with the server's clock): the
document states them in the field's description only."""
