"""Domain checks on decoded events: values a card processor cannot have sent on purpose.

A decoded record can still be nonsense (a producer bug): a non-positive or absurd amount,
an unknown currency, an event time far in the future or before card payments were
digital, an impossible merchant category or country code, an empty id, an id longer than
any real one (``MAX_ID_LENGTH``: an id is copied into the scored event and its key, so a
400 KB id would make an output the broker refuses). Each is a ``Rejection`` at stage
``validate``; the event goes to the dead-letter topic. The limits live in
``scoring.limits``, which the scoring API's OpenAPI document states too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from string import ascii_uppercase
from typing import Any

import numpy as np

from streamer.errors import Rejection
from streamer.features.reference import KNOWN_CURRENCIES, currency_exponent
from streamer.scoring.limits import (
    MAX_AMOUNT_MAJOR,
    MAX_FUTURE_MS,
    MAX_ID_LENGTH,
    MAX_MCC,
    MIN_EVENT_TIME_MS,
    MIN_MCC,
    max_amount_minor,
)
from streamer.scoring.limits import OPTIONAL_IDS as _OPTIONAL_IDS
from streamer.scoring.limits import REQUIRED_IDS as _IDS

_ALPHA2 = frozenset(a + b for a in ascii_uppercase for b in ascii_uppercase)
_MAX_MINOR = {c: max_amount_minor(c) for c in KNOWN_CURRENCIES}
"""The largest amount in minor units per currency: ``amount_minor / 10**exponent`` at most
``MAX_AMOUNT_MAJOR``, as an exact integer bound."""


_TEXT_OR_NONE = frozenset({str, type(None)})


def _reject(error_class: str, message: str) -> Rejection:
    return Rejection(error_class, message, "validate")


def validate(event: Mapping[str, Any], now_ms: int) -> Rejection | None:
    """None when the event is fit to score, else why not."""
    try:
        if _plausible(event, now_ms):
            return None
    except (KeyError, TypeError):
        pass
    return _problem(event, now_ms)


def _plausible(e: Mapping[str, Any], now_ms: int) -> bool:
    """Every check at once, for the events that pass them all (nearly every one): one
    expression costs a third of ``_problem``'s walk. True only where ``_problem`` finds
    nothing; anything else (a failed check, an unusual type) is left to ``_problem``."""
    amount, terminal, acquirer, device = (
        e["amount_minor"], e.get("terminal_id"), e.get("acquirer_id"), e.get("device_id")
    )  # fmt: skip
    return bool(
        0 < len(e["transaction_id"]) <= MAX_ID_LENGTH
        and 0 < len(e["card_id"]) <= MAX_ID_LENGTH
        and 0 < len(e["merchant_id"]) <= MAX_ID_LENGTH
        and (terminal is None or len(terminal) <= MAX_ID_LENGTH)
        and (acquirer is None or len(acquirer) <= MAX_ID_LENGTH)
        and (device is None or len(device) <= MAX_ID_LENGTH)
        and amount.__class__ is int
        and 0 < amount <= _MAX_MINOR.get(e["currency"], 0)
        and MIN_EVENT_TIME_MS <= e["event_time"] <= now_ms + MAX_FUTURE_MS
        and MIN_MCC <= e["mcc"] <= MAX_MCC
        and e["merchant_country"] in _ALPHA2
    )


def all_plausible(columns: Mapping[str, Sequence[Any]], n: int, now_ms: int) -> bool:
    """Whether every one of ``n`` events, given as columns, passes every check: the checks
    of ``_plausible`` a column at a time (C-level passes and numpy, no per-event Python).
    True only where ``_problem`` finds nothing for each event; anything else (a failed
    check, a missing column, an unusual type) is False, and each event is then validated
    alone."""
    if n == 0:
        return True
    try:
        for name in _IDS:
            ids = columns[name]
            if not all(ids) or max(map(len, ids)) > MAX_ID_LENGTH:
                return False
        optional = [columns.get(name, ()) for name in _OPTIONAL_IDS]
        if not set(map(type, chain.from_iterable(optional))) <= _TEXT_OR_NONE:
            return False
        if max(map(len, filter(None, chain.from_iterable(optional))), default=0) > MAX_ID_LENGTH:
            return False
        amounts, times, mccs = columns["amount_minor"], columns["event_time"], columns["mcc"]
        if not {*map(type, amounts), *map(type, times), *map(type, mccs)} <= {int}:
            return False
        limits = map(_MAX_MINOR.get, columns["currency"], repeat(0, n))
        amount = np.array(amounts, dtype=np.int64)
        time_ms, mcc = np.array(times, dtype=np.int64), np.array(mccs, dtype=np.int64)
        return bool(
            (amount > 0).all()
            and (amount <= np.fromiter(limits, np.int64, n)).all()
            and time_ms.min() >= MIN_EVENT_TIME_MS
            and time_ms.max() <= now_ms + MAX_FUTURE_MS
            and mcc.min() >= MIN_MCC
            and mcc.max() <= MAX_MCC
            and set(columns["merchant_country"]) <= _ALPHA2
        )
    except (KeyError, TypeError, ValueError, OverflowError):
        return False


def _problem(event: Mapping[str, Any], now_ms: int) -> Rejection | None:
    """The first check ``event`` fails, in a fixed order, or None."""
    for field in _IDS:
        if not event[field]:
            return _reject("MissingId", f"{field} is empty")
    for field in (*_IDS, *_OPTIONAL_IDS):
        value = event.get(field)
        if value is not None and len(value) > MAX_ID_LENGTH:
            return _reject(
                "IdTooLong", f"{field} has {len(value):,} characters, more than {MAX_ID_LENGTH}"
            )
    currency = event["currency"]
    if currency not in KNOWN_CURRENCIES:
        return _reject("UnknownCurrency", f"currency {currency[:16]!r} is not an ISO 4217 code")
    amount = event["amount_minor"]
    if isinstance(amount, float) and not math.isfinite(amount):
        return _reject("AmountNotFinite", f"amount_minor is {amount}")
    if amount <= 0:
        return _reject("AmountNotPositive", f"amount_minor is {amount}")
    if amount / 10 ** currency_exponent(currency) > MAX_AMOUNT_MAJOR:
        return _reject(
            "AmountOutOfRange", f"amount_minor {amount} {currency} exceeds {MAX_AMOUNT_MAJOR:,}"
        )
    event_time = event["event_time"]
    if event_time > now_ms + MAX_FUTURE_MS:
        return _reject(
            "EventTimeInFuture",
            f"event_time {event_time} is {(event_time - now_ms) // 1000}s ahead",
        )
    if event_time < MIN_EVENT_TIME_MS:
        return _reject("EventTimeOutOfRange", f"event_time {event_time} is before 2000-01-01")
    if not MIN_MCC <= event["mcc"] <= MAX_MCC:
        return _reject("InvalidMcc", f"mcc {event['mcc']} is not a 4-digit merchant category code")
    country = event["merchant_country"]
    if len(country) != 2 or not country.isascii() or not country.isalpha() or not country.isupper():
        return _reject(
            "InvalidCountry", f"merchant_country {country[:16]!r} is not ISO 3166-1 alpha-2"
        )
    return None
