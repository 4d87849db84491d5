"""The Redis feature layout and the assembly of the model's feature matrix. Pure: no I/O.

Each card and each merchant is one Redis string value: the entity's fields packed as
little-endian float64 (``'<f8'``) in the order of ``CARD_FIELDS`` / ``MERCHANT_FIELDS``.
float64 because epoch seconds (``last_txn_time``) lose whole minutes in float32. One MGET
returns all blobs of a batch and ``np.frombuffer`` turns them into a matrix at once.

Card fields (key ``{prefix}feat:v1:card:{card_id}``):

==========================  ===========================================  ========
field                       meaning (units)                              default
==========================  ===========================================  ========
txn_count_1h                card transactions in the last hour           0
txn_count_24h               card transactions in the last 24 hours       2
txn_count_7d                card transactions in the last 7 days         14
amount_mean_30d             mean amount, 30 days (major units)           60
amount_std_30d              standard deviation of amounts, 30 days       45
amount_max_30d              largest amount, 30 days (major units)        250
home_country                ``country_code`` of the issuing country      0 (unknown)
last_country                ``country_code`` of the previous merchant    0 (unknown)
last_txn_time               previous transaction (epoch seconds)         0 (unknown)
card_age_days               days since the card was issued               365
distinct_merchants_24h      distinct merchants in the last 24 hours      2
==========================  ===========================================  ========

Merchant fields (key ``{prefix}feat:v1:merchant:{merchant_id}``):

==========================  ===========================================  ========
risk_score                  acquirer risk rating in [0, 1]               0.1
chargeback_rate_90d         chargebacks / transactions, 90 days          0.005
fraud_rate_90d              confirmed fraud / transactions, 90 days      0.01
txn_count_30d               transactions in the last 30 days             1000
amount_mean_30d             mean amount, 30 days (major units)           60
==========================  ===========================================  ========

A zero country code means unknown and never counts as foreign or changed; a zero
``last_txn_time`` means no previous transaction (``seconds_since_last_txn`` = 30 days).
The defaults here are the layout's; serving fills a missing entity with the defaults
recorded in the model's metadata (those the model was trained with).

Event columns (``event_columns``) and the feature matrix (``assemble``) are built here too, so
training and serving share one code path and cannot skew.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CARD_DEFAULTS",
    "CARD_FIELDS",
    "CARD_INDEX",
    "CHANNELS",
    "ENTRY_MODES",
    "FEATURE_NAMES",
    "KNOWN_CURRENCIES",
    "LAYOUT_VERSION",
    "MAX_GAP_S",
    "MERCHANT_DEFAULTS",
    "MERCHANT_FIELDS",
    "MERCHANT_INDEX",
    "RISKY_MCCS",
    "EventColumns",
    "assemble",
    "card_key",
    "country_code",
    "country_codes",
    "currency_exponent",
    "defaults_vector",
    "event_columns",
    "merchant_key",
    "pack",
    "pack_rows",
    "unknown_features",
    "unpack_rows",
]

LAYOUT_VERSION = "v1"
"""Part of every key: a new field order gets a new version, so old and new never mix."""

CARD_FIELDS: tuple[str, ...] = (
    "txn_count_1h",
    "txn_count_24h",
    "txn_count_7d",
    "amount_mean_30d",
    "amount_std_30d",
    "amount_max_30d",
    "home_country",
    "last_country",
    "last_txn_time",
    "card_age_days",
    "distinct_merchants_24h",
)
MERCHANT_FIELDS: tuple[str, ...] = (
    "risk_score",
    "chargeback_rate_90d",
    "fraud_rate_90d",
    "txn_count_30d",
    "amount_mean_30d",
)
CARD_INDEX: dict[str, int] = {name: i for i, name in enumerate(CARD_FIELDS)}
MERCHANT_INDEX: dict[str, int] = {name: i for i, name in enumerate(MERCHANT_FIELDS)}

CARD_DEFAULTS: npt.NDArray[np.float64] = np.array(
    [0.0, 2.0, 14.0, 60.0, 45.0, 250.0, 0.0, 0.0, 0.0, 365.0, 2.0], dtype=np.float64
)
MERCHANT_DEFAULTS: npt.NDArray[np.float64] = np.array(
    [0.1, 0.005, 0.01, 1000.0, 60.0], dtype=np.float64
)
CARD_DEFAULTS.setflags(write=False)
MERCHANT_DEFAULTS.setflags(write=False)

_F8 = np.dtype("<f8")


def card_key(prefix: str, card_id: str) -> str:
    """Redis key of a card's packed features."""
    return f"{prefix}feat:{LAYOUT_VERSION}:card:{card_id}"


def merchant_key(prefix: str, merchant_id: str) -> str:
    """Redis key of a merchant's packed features."""
    return f"{prefix}feat:{LAYOUT_VERSION}:merchant:{merchant_id}"


def defaults_vector(
    fields: Sequence[str], values: dict[str, float], fallback: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """A default vector in ``fields`` order from a by-name mapping (for model metadata).

    Fields absent from ``values`` take ``fallback``'s value; names not in ``fields`` raise
    ``KeyError`` so that a metadata file written for another layout is noticed.
    """
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise KeyError(f"fields not in the layout: {', '.join(unknown)}")
    return np.array(
        [values.get(name, float(fallback[i])) for i, name in enumerate(fields)], dtype=np.float64
    )


def pack(values: Sequence[float] | npt.NDArray[np.floating]) -> bytes:
    """One entity's values as little-endian float64 bytes."""
    return np.asarray(values, dtype=_F8).tobytes()


def pack_rows(matrix: npt.NDArray[np.floating]) -> list[bytes]:
    """Each row of a 2-D matrix packed like ``pack``, with one conversion for the matrix."""
    data = np.ascontiguousarray(matrix, dtype=_F8)
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {data.shape}")
    raw = data.tobytes()
    step = data.shape[1] * _F8.itemsize
    return [raw[i : i + step] for i in range(0, len(raw), step)]


def unpack_rows(
    blobs: Sequence[bytes | None], defaults: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Blobs from one MGET as a float64 matrix ``[n, width]`` and a ``found`` mask ``[n]``.

    A missing (None) or wrong-length blob gives the defaults row and ``found=False``: a
    wrong length means another layout wrote the key, and its values cannot be trusted.
    NaN values inside a found blob take the default of their column.
    """
    width = int(defaults.shape[0])
    size = width * _F8.itemsize
    n = len(blobs)
    found_list = [b is not None and len(b) == size for b in blobs]
    if n and all(found_list):  # the common case: no masks, one copy
        values = np.frombuffer(b"".join(blobs), dtype=_F8).reshape(n, width)  # type: ignore[arg-type]
        return np.where(np.isnan(values), defaults, values), np.ones(n, dtype=np.bool_)
    found = np.array(found_list, dtype=np.bool_)
    out = np.empty((n, width), dtype=np.float64)
    out[:] = defaults
    if any(found_list):
        raw = b"".join([b for b, ok in zip(blobs, found_list, strict=True) if ok and b])
        values = np.frombuffer(raw, dtype=_F8).reshape(-1, width)
        out[found] = np.where(np.isnan(values), defaults, values)
    return out, found


# --- countries and currencies -------------------------------------------------------------

_COUNTRY_CODES: dict[str, float] = {
    a + b: float((ord(a.upper()) - 64) * 32 + (ord(b.upper()) - 64))
    for a in string.ascii_letters
    for b in string.ascii_letters
}  # every case variant is a key, so the vectorized path is one dict look-up per code


def country_code(alpha2: str | None) -> float:
    """A deterministic number for an ISO 3166-1 alpha-2 code: ``(A-64)*32 + (B-64)``.

    "DE" is 4*32 + 5 = 133. Anything that is not two ASCII letters (None, "", "D1") is 0.0,
    which the features read as unknown. Case does not matter.
    """
    return _COUNTRY_CODES.get(alpha2, 0.0) if alpha2 else 0.0


def country_codes(alpha2s: Sequence[str | None]) -> npt.NDArray[np.float64]:
    """``country_code`` of many codes at once (one dict look-up per code, no numpy per code)."""
    get = _COUNTRY_CODES.get
    return np.fromiter((get(c, 0.0) for c in alpha2s), dtype=np.float64, count=len(alpha2s))  # type: ignore[arg-type]


# ISO 4217 active codes; exponents are 2 unless listed below.
_ISO_4217 = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP
    MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR
    RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW
    ZWG
"""
KNOWN_CURRENCIES: frozenset[str] = frozenset(_ISO_4217.split())
_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_ZERO_DECIMALS.split(), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(), 3),
}
_MINOR_PER_MAJOR: dict[str, float] = {c: 10.0 ** _EXPONENTS.get(c, 2) for c in KNOWN_CURRENCIES}


def currency_exponent(code: str) -> int:
    """Minor-unit exponent of an ISO 4217 currency: JPY 0, EUR 2, KWD 3; unknown codes 2."""
    return _EXPONENTS.get(code, 2)


# --- event columns --------------------------------------------------------------------------

CHANNELS: tuple[str, ...] = ("POS", "ECOMMERCE", "ATM", "MOTO", "RECURRING", "UNKNOWN")
"""Channel symbols in schema order; a channel's code is its index."""
ENTRY_MODES: tuple[str, ...] = (
    "CHIP",
    "CONTACTLESS",
    "MAGSTRIPE",
    "MANUAL",
    "CREDENTIAL_ON_FILE",
    "TOKENIZED_WALLET",
    "UNKNOWN",
)
"""Entry-mode symbols in schema order; an entry mode's code is its index."""
_CHANNEL_CODES = {s: i for i, s in enumerate(CHANNELS)}
_ENTRY_CODES = {s: i for i, s in enumerate(ENTRY_MODES)}
_THREE_DS_CODES: dict[bool | None, int] = {None: -1, False: 0, True: 1}


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


def event_columns(events: Sequence[Mapping[str, Any]]) -> EventColumns:
    """Columns from decoded TransactionEvent dicts (``event_time`` as epoch millis).

    One comprehension per field: per-event numpy calls cost ~4x more (FIELD_NOTES).
    Unknown channel or entry-mode symbols map to UNKNOWN; unknown currencies to exponent 2.
    """
    n = len(events)
    minor = np.fromiter((e["amount_minor"] for e in events), dtype=np.float64, count=n)
    per_major = _MINOR_PER_MAJOR.get
    scale = np.fromiter((per_major(e["currency"], 100.0) for e in events), np.float64, count=n)
    unknown_channel = _CHANNEL_CODES["UNKNOWN"]
    unknown_entry = _ENTRY_CODES["UNKNOWN"]
    return EventColumns(
        amount=minor / scale,
        event_time_ms=np.fromiter((e["event_time"] for e in events), np.int64, count=n),
        mcc=np.fromiter((e["mcc"] for e in events), np.int32, count=n),
        merchant_country=country_codes([e["merchant_country"] for e in events]),
        channel=np.fromiter(
            (_CHANNEL_CODES.get(e["channel"], unknown_channel) for e in events), np.int8, n
        ),
        entry_mode=np.fromiter(
            (_ENTRY_CODES.get(e["entry_mode"], unknown_entry) for e in events), np.int8, n
        ),
        card_present=np.fromiter((e["card_present"] for e in events), np.bool_, count=n),
        three_ds=np.fromiter((_THREE_DS_CODES[e.get("three_ds")] for e in events), np.int8, n),
        has_device=np.fromiter((e.get("device_id") is not None for e in events), np.bool_, n),
        is_recurring=np.fromiter((e.get("is_recurring", False) for e in events), np.bool_, n),
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
    "mcc_risky": lambda ev, c, m: _RISKY_TABLE[np.clip(ev.mcc, 0, 9_999)],
    "three_ds": lambda ev, c, m: ev.three_ds,
    "has_device": lambda ev, c, m: ev.has_device,
    "is_recurring": lambda ev, c, m: ev.is_recurring,
    "is_foreign": lambda ev, c, m: _differs(ev.merchant_country, c[:, CARD_INDEX["home_country"]]),
    "country_changed": lambda ev, c, m: _differs(
        ev.merchant_country, c[:, CARD_INDEX["last_country"]]
    ),
    "seconds_since_last_txn": lambda ev, c, m: _since_last(ev, c),
    "amount_ratio": lambda ev, c, m: ev.amount / _safe(c[:, CARD_INDEX["amount_mean_30d"]]),
    "amount_zscore": lambda ev, c, m: np.clip(
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
