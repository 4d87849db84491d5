"""Feature layout, event columns and assembly on hand-computed examples."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest

from streamer import features as f
from streamer.testing import sample_event as base_event

T0_MS = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC, a Tuesday


def event(**overrides: Any) -> dict[str, Any]:
    return base_event(**{"event_time": T0_MS, **overrides})


def card_row(**values: float) -> np.ndarray:
    row = f.CARD_DEFAULTS.copy()
    for name, value in values.items():
        row[f.CARD_INDEX[name]] = value
    return row


def test_layout_widths_and_defaults_match() -> None:
    assert f.CARD_DEFAULTS.shape == (len(f.CARD_FIELDS),)
    assert f.MERCHANT_DEFAULTS.shape == (len(f.MERCHANT_FIELDS),)
    assert f.CARD_DEFAULTS.dtype == np.float64
    assert not f.CARD_DEFAULTS.flags.writeable


def test_keys_are_versioned_and_prefixed() -> None:
    assert f.card_key("p:", "card-1") == "p:feat:v1:card:card-1"
    assert f.merchant_key("", "m-9") == "feat:v1:merchant:m-9"


def test_pack_is_little_endian_float64() -> None:
    blob = f.pack([1.5, 1_700_000_000.25])
    assert blob == struct.pack("<2d", 1.5, 1_700_000_000.25)


def test_pack_unpack_round_trip_keeps_epoch_seconds_exact() -> None:
    rows = np.array([[float(i), 1_700_000_123.0 + i, -2.5, 0.0, 7.0] for i in range(4)])
    matrix, found = f.unpack_rows(f.pack_rows(rows), f.MERCHANT_DEFAULTS)
    np.testing.assert_array_equal(matrix, rows)
    assert found.tolist() == [True] * 4


@pytest.mark.parametrize(
    "bad",
    [None, b"", b"\x00" * 8, f.pack([1.0] * 6)],
    ids=["missing", "empty", "too-short", "too-long"],
)
def test_missing_or_wrong_length_blob_gives_defaults_and_not_found(bad: bytes | None) -> None:
    good = f.pack([0.5, 0.01, 0.02, 10.0, 30.0])
    matrix, found = f.unpack_rows([good, bad, good], f.MERCHANT_DEFAULTS)
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(matrix[1], f.MERCHANT_DEFAULTS)
    np.testing.assert_array_equal(matrix[0], [0.5, 0.01, 0.02, 10.0, 30.0])
    np.testing.assert_array_equal(matrix[2], matrix[0])


def test_nan_inside_a_found_blob_takes_the_column_default() -> None:
    matrix, found = f.unpack_rows([f.pack([math.nan, 0.2, 0.3, 4.0, 5.0])], f.MERCHANT_DEFAULTS)
    assert found.tolist() == [True]
    np.testing.assert_array_equal(matrix[0], [f.MERCHANT_DEFAULTS[0], 0.2, 0.3, 4.0, 5.0])


def test_unpack_of_nothing_is_empty() -> None:
    matrix, found = f.unpack_rows([], f.CARD_DEFAULTS)
    assert matrix.shape == (0, len(f.CARD_FIELDS))
    assert found.shape == (0,)


@pytest.mark.parametrize(
    ("alpha2", "code"),
    [("AA", 33.0), ("DE", 4 * 32 + 5.0), ("de", 133.0), ("ZZ", 26 * 32 + 26.0), ("", 0.0),
     (None, 0.0), ("D1", 0.0), ("DEU", 0.0)],
)  # fmt: skip
def test_country_code(alpha2: str | None, code: float) -> None:
    assert f.country_code(alpha2) == code
    assert f.country_codes([alpha2]).tolist() == [code]


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("EUR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3), ("KWD", 3), ("JOD", 3),
     ("OMR", 3), ("TND", 3), ("XXX", 2)],
)  # fmt: skip
def test_currency_exponent(currency: str, exponent: int) -> None:
    assert f.currency_exponent(currency) == exponent


def test_known_currencies_cover_the_exponent_table() -> None:
    assert {"EUR", "USD", "GBP", "JPY", "KRW", "BHD", "KWD"} <= f.KNOWN_CURRENCIES
    assert "XXX" not in f.KNOWN_CURRENCIES


def test_event_columns_decode_every_field() -> None:
    events = [
        event(),
        event(
            amount_minor=500, currency="JPY", channel="ECOMMERCE", entry_mode="MANUAL",
            card_present=False, three_ds=True, device_id="d", merchant_country="FR", mcc=7995,
        ),
        event(amount_minor=1_234, currency="KWD", channel="BOGUS", entry_mode="CREDENTIAL_ON_FILE",
              three_ds=False, is_recurring=True),
    ]  # fmt: skip
    cols = f.event_columns(events)
    assert len(cols) == 3
    np.testing.assert_allclose(cols.amount, [123.45, 500.0, 1.234])
    assert cols.event_time_ms.tolist() == [T0_MS] * 3
    assert cols.mcc.tolist() == [5411, 7995, 5411]
    assert cols.merchant_country.tolist() == [133.0, f.country_code("FR"), 133.0]
    assert cols.channel.tolist() == [0, 1, f.CHANNELS.index("UNKNOWN")]
    assert cols.entry_mode.tolist() == [0, 3, 4]
    assert cols.card_present.tolist() == [True, False, True]
    assert cols.three_ds.tolist() == [-1, 1, 0]
    assert cols.has_device.tolist() == [False, True, False]
    assert cols.is_recurring.tolist() == [False, False, True]


def test_assemble_hand_computed_row() -> None:
    # 22:13:20 UTC on a Tuesday; card from FR last seen in FR 100 s ago; merchant in DE.
    cols = f.event_columns([event(amount_minor=30_000, mcc=5944, three_ds=True)])
    card = card_row(
        amount_mean_30d=100.0, amount_std_30d=50.0, amount_max_30d=200.0,
        home_country=f.country_code("FR"), last_country=f.country_code("FR"),
        last_txn_time=T0_MS / 1000 - 100, txn_count_1h=3, card_age_days=12,
    )[None, :]  # fmt: skip
    merchant = np.array([[0.7, 0.03, 0.05, 900.0, 150.0]])
    names = [
        "amount", "log_amount", "hour_of_day", "day_of_week", "is_night", "mcc_risky",
        "is_foreign", "country_changed", "seconds_since_last_txn", "amount_ratio",
        "amount_zscore", "amount_vs_max", "txn_count_1h", "card_age_days",
        "merchant_risk_score", "merchant_fraud_rate", "amount_vs_merchant_mean", "three_ds",
    ]  # fmt: skip
    out = f.assemble(cols, card, merchant, names)
    expected = [
        300.0, math.log1p(300.0), 22, 1, 0, 1, 1, 1, 100.0, 3.0, 4.0, 1.5, 3, 12, 0.7, 0.05,
        2.0, 1,
    ]  # fmt: skip
    np.testing.assert_allclose(out[0], np.array(expected, dtype=np.float32), rtol=1e-6)


def test_assemble_follows_the_requested_order_and_is_c_contiguous_float32() -> None:
    cols = f.event_columns([event(), event(amount_minor=100)])
    card = np.tile(f.CARD_DEFAULTS, (2, 1))
    merchant = np.tile(f.MERCHANT_DEFAULTS, (2, 1))
    full = f.assemble(cols, card, merchant, f.FEATURE_NAMES)
    order = ["card_age_days", "amount", "mcc"]
    picked = f.assemble(cols, card, merchant, order)
    assert picked.dtype == np.float32
    assert picked.flags.c_contiguous
    assert picked.shape == (2, 3)
    idx = [f.FEATURE_NAMES.index(n) for n in order]
    np.testing.assert_array_equal(picked, full[:, idx])
    np.testing.assert_allclose(picked[:, 1], [123.45, 1.0], rtol=1e-6)


def test_unknown_countries_and_times_are_not_evidence() -> None:
    cols = f.event_columns([event(merchant_country="XX1")])  # invalid code → 0
    card = card_row(home_country=0.0, last_country=f.country_code("DE"), last_txn_time=0.0)
    out = f.assemble(cols, card[None, :], f.MERCHANT_DEFAULTS[None, :],
                     ["is_foreign", "country_changed", "seconds_since_last_txn"])  # fmt: skip
    assert out[0].tolist() == [0.0, 0.0, f.MAX_GAP_S]


@pytest.mark.parametrize(
    ("last_offset_s", "expected"),
    [(-50.0, 0.0), (10.0, 10.0), (40 * 86_400.0, f.MAX_GAP_S)],
    ids=["clock-skew-clipped", "plain", "capped"],
)
def test_seconds_since_last_txn(last_offset_s: float, expected: float) -> None:
    cols = f.event_columns([event()])
    card = card_row(last_txn_time=T0_MS / 1000 - last_offset_s)[None, :]
    out = f.assemble(cols, card, f.MERCHANT_DEFAULTS[None, :], ["seconds_since_last_txn"])
    assert out[0, 0] == pytest.approx(expected)


def test_amount_ratios_are_safe_for_zero_history() -> None:
    cols = f.event_columns([event(amount_minor=500)])
    card = card_row(amount_mean_30d=0.0, amount_std_30d=0.0, amount_max_30d=0.0)[None, :]
    merchant = np.array([[0.1, 0.0, 0.0, 0.0, 0.0]])
    out = f.assemble(cols, card, merchant, ["amount_ratio", "amount_zscore", "amount_vs_max",
                                            "amount_vs_merchant_mean"])  # fmt: skip
    assert out[0].tolist() == [5.0, 5.0, 5.0, 5.0]
    assert np.isfinite(out).all()


def test_unknown_features_and_assemble_refusal() -> None:
    assert f.unknown_features(["amount", "nope", "mcc", "also_nope"]) == ["nope", "also_nope"]
    assert f.unknown_features(f.FEATURE_NAMES) == []
    cols = f.event_columns([event()])
    with pytest.raises(KeyError, match="nope"):
        f.assemble(cols, f.CARD_DEFAULTS[None, :], f.MERCHANT_DEFAULTS[None, :], ["nope"])


def test_assemble_rejects_misaligned_feature_rows() -> None:
    cols = f.event_columns([event(), event()])
    with pytest.raises(ValueError, match="do not match"):
        f.assemble(cols, f.CARD_DEFAULTS[None, :], np.tile(f.MERCHANT_DEFAULTS, (2, 1)), ["amount"])


def test_assemble_accepts_broadcast_defaults() -> None:
    # The degraded path scores with read-only broadcast views of the defaults.
    cols = f.event_columns([event()] * 3)
    card = np.broadcast_to(f.CARD_DEFAULTS, (3, len(f.CARD_FIELDS)))
    merchant = np.broadcast_to(f.MERCHANT_DEFAULTS, (3, len(f.MERCHANT_FIELDS)))
    out = f.assemble(cols, card, merchant, f.FEATURE_NAMES)
    assert out.shape == (3, len(f.FEATURE_NAMES))


def test_defaults_vector_by_name() -> None:
    vec = f.defaults_vector(f.MERCHANT_FIELDS, {"risk_score": 0.9}, f.MERCHANT_DEFAULTS)
    assert vec.tolist() == [0.9, *f.MERCHANT_DEFAULTS[1:].tolist()]
    with pytest.raises(KeyError, match="bogus"):
        f.defaults_vector(f.MERCHANT_FIELDS, {"bogus": 1.0}, f.MERCHANT_DEFAULTS)
