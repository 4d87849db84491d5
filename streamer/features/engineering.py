"""Feature engineering: event columns and the model's float32 feature matrix. Pure: no I/O.

Training (``models/train.py``) and serving share this one code path, so they cannot skew.
Card and merchant matrices come from ``layout.unpack_rows``; the event fields from
``event_columns``; ``assemble`` computes each feature the model asks for with one
vectorized expression per column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import repeat
from operator import is_not
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.codec.columns import column_of, optional_column_of
from streamer.features.layout import CARD_FIELDS, CARD_INDEX, MERCHANT_FIELDS, MERCHANT_INDEX
from streamer.features.reference import (
    CHANNEL_CODES,
    ENTRY_CODES,
    MINOR_PER_MAJOR,
    THREE_DS_CODES,
    country_codes,
)


@dataclass(frozen=True, slots=True)
class EventColumns:
    """The event fields the model uses, one numpy array per field, one row per event.

    ``amount`` is in major units of the event's currency; ``three_ds`` is -1 (not
    attempted), 0 (failed) or 1 (succeeded); countries are ``country_code`` numbers.
    """

    amount: npt.NDArray[np.float64]
    event_time_ms: npt.NDArray[np.int64]
    mcc: npt.NDArray[np.int32]
    merchant_country: npt.NDArray[np.float64]
    channel: npt.NDArray[np.int8]
    entry_mode: npt.NDArray[np.int8]
    card_present: npt.NDArray[np.bool_]
    three_ds: npt.NDArray[np.int8]
    has_device: npt.NDArray[np.bool_]
    is_recurring: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.amount.shape[0])

    def take(self, rows: npt.NDArray[np.intp]) -> EventColumns:
        """The rows ``rows`` of every column."""
        return EventColumns(*(getattr(self, f.name)[rows] for f in fields(self)))


def event_columns(events: Sequence[Mapping[str, Any]]) -> EventColumns:
    """Columns from decoded TransactionEvents (``event_time`` as epoch millis): dicts, or
    ``Records`` already held as columns (the stream's batches; nothing per event then).

    One C-level pass per field (``column_of`` and ``map``): per-event numpy calls cost ~4x
    more (FIELD_NOTES).
    Unknown channel or entry-mode symbols map to UNKNOWN; unknown currencies to exponent 2.
    """
    n = len(events)
    minor = np.fromiter(column_of(events, "amount_minor"), np.float64, count=n)
    per_major = map(MINOR_PER_MAJOR.get, column_of(events, "currency"), repeat(100.0, n))
    channels = map(
        CHANNEL_CODES.get, column_of(events, "channel"), repeat(CHANNEL_CODES["UNKNOWN"])
    )
    entry_modes = map(
        ENTRY_CODES.get, column_of(events, "entry_mode"), repeat(ENTRY_CODES["UNKNOWN"])
    )
    devices = map(is_not, optional_column_of(events, "device_id"), repeat(None, n))
    return EventColumns(
        amount=minor / np.fromiter(per_major, np.float64, count=n),
        event_time_ms=np.fromiter(column_of(events, "event_time"), np.int64, count=n),
        mcc=np.fromiter(column_of(events, "mcc"), np.int32, count=n),
        merchant_country=country_codes(column_of(events, "merchant_country")),
        channel=np.fromiter(channels, np.int8, n),
        entry_mode=np.fromiter(entry_modes, np.int8, n),
        card_present=np.fromiter(column_of(events, "card_present"), np.bool_, count=n),
        three_ds=np.fromiter(
            map(THREE_DS_CODES.__getitem__, optional_column_of(events, "three_ds")), np.int8, n
        ),
        has_device=np.fromiter(devices, np.bool_, n),
        is_recurring=np.fromiter(optional_column_of(events, "is_recurring", False), np.bool_, n),
    )


# --- the feature matrix ---------------------------------------------------------------------

RISKY_MCCS: frozenset[int] = frozenset(
    {4829, 5094, 5732, 5816, 5944, 5967, 6051, 6540, 7801, 7802, 7995}
)
"""Money transfer, precious stones, electronics, digital games, jewelry, direct marketing,
quasi-cash/crypto, stored-value loads, lotteries, racing, gambling: easy to resell or cash."""
_RISKY_TABLE = np.zeros(10_000, dtype=np.bool_)  # indexing a table beats np.isin 10x
_RISKY_TABLE[sorted(RISKY_MCCS)] = True
MAX_GAP_S = 30 * 86_400.0
"""``seconds_since_last_txn`` is clipped to this, and used when the last time is unknown."""

_Feature = Callable[[EventColumns, npt.NDArray[np.float64], npt.NDArray[np.float64]], Any]


def _card(name: str) -> _Feature:
    i = CARD_INDEX[name]
    return lambda ev, card, merchant: card[:, i]


def _merchant(name: str) -> _Feature:
    i = MERCHANT_INDEX[name]
    return lambda ev, card, merchant: merchant[:, i]


def _hour(ev: EventColumns) -> npt.NDArray[np.int64]:
    return (ev.event_time_ms // 3_600_000) % 24


def _since_last(ev: EventColumns, card: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    last = card[:, CARD_INDEX["last_txn_time"]]
    gap = ev.event_time_ms / 1000.0 - last
    return np.where(last > 0, np.minimum(np.maximum(gap, 0.0), MAX_GAP_S), MAX_GAP_S)


def _differs(codes: npt.NDArray[np.float64], other: npt.NDArray[np.float64]) -> Any:
    # An unknown (0) country on either side is not evidence of anything.
    return (codes > 0) & (other > 0) & (codes != other)


def _safe(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # Amount statistics below one major unit are noise; this also avoids division by zero.
    return np.maximum(values, 1.0)


def _clip(values: Any, low: float, high: float) -> Any:
    # np.clip's Python wrapper costs ~10 µs a call, more than a small batch's arithmetic.
    return np.minimum(np.maximum(values, low), high)


_FEATURES: dict[str, _Feature] = {
    "amount": lambda ev, c, m: ev.amount,
    "log_amount": lambda ev, c, m: np.log1p(np.maximum(ev.amount, 0.0)),
    "hour_of_day": lambda ev, c, m: _hour(ev),
    "day_of_week": lambda ev, c, m: (ev.event_time_ms // 86_400_000 + 3) % 7,  # Monday = 0
    "is_night": lambda ev, c, m: _hour(ev) < 6,
    "card_present": lambda ev, c, m: ev.card_present,
    "channel": lambda ev, c, m: ev.channel,
    "entry_mode": lambda ev, c, m: ev.entry_mode,
    "mcc": lambda ev, c, m: ev.mcc,
    "mcc_risky": lambda ev, c, m: _RISKY_TABLE[_clip(ev.mcc, 0, 9_999)],
    "three_ds": lambda ev, c, m: ev.three_ds,
    "has_device": lambda ev, c, m: ev.has_device,
    "is_recurring": lambda ev, c, m: ev.is_recurring,
    "is_foreign": lambda ev, c, m: _differs(ev.merchant_country, c[:, CARD_INDEX["home_country"]]),
    "country_changed": lambda ev, c, m: _differs(
        ev.merchant_country, c[:, CARD_INDEX["last_country"]]
    ),
    "seconds_since_last_txn": lambda ev, c, m: _since_last(ev, c),
    "amount_ratio": lambda ev, c, m: ev.amount / _safe(c[:, CARD_INDEX["amount_mean_30d"]]),
    "amount_zscore": lambda ev, c, m: _clip(
        (ev.amount - c[:, CARD_INDEX["amount_mean_30d"]])
        / _safe(c[:, CARD_INDEX["amount_std_30d"]]),
        -50.0,
        50.0,
    ),
    "amount_vs_max": lambda ev, c, m: ev.amount / _safe(c[:, CARD_INDEX["amount_max_30d"]]),
    "txn_count_1h": _card("txn_count_1h"),
    "txn_count_24h": _card("txn_count_24h"),
    "txn_count_7d": _card("txn_count_7d"),
    "distinct_merchants_24h": _card("distinct_merchants_24h"),
    "card_age_days": _card("card_age_days"),
    "merchant_risk_score": _merchant("risk_score"),
    "merchant_chargeback_rate": _merchant("chargeback_rate_90d"),
    "merchant_fraud_rate": _merchant("fraud_rate_90d"),
    "merchant_txn_count_30d": _merchant("txn_count_30d"),
    "amount_vs_merchant_mean": lambda ev, c, m: (
        ev.amount / _safe(m[:, MERCHANT_INDEX["amount_mean_30d"]])
    ),
}
FEATURE_NAMES: tuple[str, ...] = tuple(_FEATURES)
"""Every feature ``assemble`` can compute; a model uses any subset, in its own order."""


def unknown_features(names: Sequence[str]) -> list[str]:
    """Names ``assemble`` cannot compute, in their given order (empty when all are known)."""
    return [name for name in names if name not in _FEATURES]


def assemble(
    events: EventColumns,
    card: npt.NDArray[np.float64],
    merchant: npt.NDArray[np.float64],
    feature_names: Sequence[str],
) -> npt.NDArray[np.float32]:
    """The model input: C-contiguous float32 ``[n, len(feature_names)]`` in the given order.

    ``card`` and ``merchant`` are the ``unpack_rows`` matrices aligned with ``events``
    (row i of each belongs to event i). One vectorized expression per column.
    """
    unknown = unknown_features(feature_names)
    if unknown:
        raise KeyError(f"unknown features: {', '.join(unknown)}")
    n = len(events)
    if card.shape != (n, len(CARD_FIELDS)) or merchant.shape != (n, len(MERCHANT_FIELDS)):
        raise ValueError(
            f"card {card.shape} / merchant {merchant.shape} do not match {n} events "
            f"x ({len(CARD_FIELDS)}, {len(MERCHANT_FIELDS)}) fields"
        )
    out = np.empty((n, len(feature_names)), dtype=np.float32)
    for j, name in enumerate(feature_names):
        out[:, j] = _FEATURES[name](events, card, merchant)
    return out
