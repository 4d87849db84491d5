"""The Redis feature layout: keys, field order, defaults, packing. Pure: no I/O.

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

"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

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
    if n and None not in blobs and set(map(len, blobs)) == {size}:  # type: ignore[arg-type]
        # the common case, checked without Python per blob: no masks, one copy
        values = np.frombuffer(b"".join(blobs), dtype=_F8).reshape(n, width)  # type: ignore[arg-type]
        return np.where(np.isnan(values), defaults, values), np.ones(n, dtype=np.bool_)
    found_list = [b is not None and len(b) == size for b in blobs]
    found = np.array(found_list, dtype=np.bool_)
    out = np.empty((n, width), dtype=np.float64)
    out[:] = defaults
    if any(found_list):
        raw = b"".join([b for b, ok in zip(blobs, found_list, strict=True) if ok and b])
        values = np.frombuffer(raw, dtype=_F8).reshape(-1, width)
        out[found] = np.where(np.isnan(values), defaults, values)
    return out, found
