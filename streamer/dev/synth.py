"""Seeded synthetic transactions: cards, merchants, events and hidden fraud labels. Pure.

Shared by ``models/train.py``, ``streamer produce`` and ``streamer features load
--synthetic``, so the events a demo stream carries look like what the model learned from,
and the features written to Redis describe the same cards and merchants.

Synthetic amounts are in the card's billing currency (as processors forward them), so a
card's amount statistics and its events share one scale.

Fraud (about 1.5% of events, concentrated on the ~3% compromised cards and at night) shows
some of: an amount far above the card's history, a foreign merchant, a burst of recent
transactions, a risky merchant category or merchant, card-not-present without 3-D Secure,
no device fingerprint, a young card. Each pattern is drawn independently and some fraud
shows none of them, while some genuine events look odd (travel, large purchases, busy
cards), so a model cannot be perfect.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.features.layout import CARD_FIELDS, MERCHANT_FIELDS
from streamer.features.reference import CHANNELS, ENTRY_MODES, country_codes, currency_exponent

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

# Issuing countries: (alpha-2, share of cards, billing currency, units per EUR).
_HOMES = (
    ("DE", 0.25, "EUR", 1.0), ("FR", 0.15, "EUR", 1.0), ("GB", 0.12, "GBP", 0.85),
    ("US", 0.16, "USD", 1.1), ("NL", 0.06, "EUR", 1.0), ("ES", 0.07, "EUR", 1.0),
    ("IT", 0.07, "EUR", 1.0), ("CH", 0.04, "CHF", 0.95), ("JP", 0.06, "JPY", 160.0),
    ("KW", 0.02, "KWD", 0.33),
)  # fmt: skip
_ABROAD = ("NG", "RU", "BR", "CN", "RO", "TR", "TH", "AE", "MX", "ID")
COUNTRIES: tuple[str, ...] = tuple(h[0] for h in _HOMES) + _ABROAD
_CURRENCIES = tuple(h[2] for h in _HOMES)

# Merchant categories: (mcc, share of merchants, online share, amount factor, base risk).
_MCCS = (
    (5411, 0.18, 0.02, 1.0, 0.02), (5812, 0.12, 0.05, 0.9, 0.03), (5814, 0.08, 0.05, 0.3, 0.02),
    (5541, 0.07, 0.0, 0.9, 0.03), (5912, 0.05, 0.1, 0.6, 0.02), (5311, 0.05, 0.3, 1.5, 0.04),
    (5691, 0.06, 0.5, 1.4, 0.05), (4111, 0.04, 0.3, 0.3, 0.02), (4121, 0.03, 0.5, 0.5, 0.04),
    (5999, 0.05, 0.4, 1.0, 0.06), (4814, 0.03, 0.8, 1.0, 0.05), (5968, 0.02, 0.95, 0.4, 0.05),
    (4511, 0.02, 0.85, 6.0, 0.08), (7011, 0.02, 0.6, 4.0, 0.06), (6011, 0.04, 0.0, 2.0, 0.05),
    (5732, 0.04, 0.5, 4.0, 0.15), (5944, 0.01, 0.3, 5.0, 0.2), (5816, 0.02, 1.0, 0.5, 0.2),
    (5967, 0.01, 1.0, 1.0, 0.35), (4829, 0.01, 0.8, 3.0, 0.35), (6051, 0.01, 1.0, 3.0, 0.4),
    (7995, 0.02, 0.85, 1.5, 0.35),
)  # fmt: skip
_RECURRING_MCCS = (4814, 5968)
_RISKY_MERCHANT_RISK = 0.15
_POS, _ECOM, _ATM, _MOTO, _RECUR = range(5)  # CHANNELS order
_NIGHT_WEIGHT = 0.35  # genuine activity per night hour relative to a day hour


@dataclass
class Population:
    """Card and merchant profiles; arrays are aligned with ``card_ids`` / ``merchant_ids``.

    Country columns index ``COUNTRIES``; card amounts are in the card's currency.
    """

    seed: int
    card_ids: list[str]
    card_home: I64
    card_mean: F64
    card_std: F64
    card_activity: F64  # transactions per day
    card_age_days: F64
    card_compromised: Bools
    merchant_ids: list[str]
    merchant_mcc: I64
    merchant_country: I64
    merchant_online: F64
    merchant_amount_factor: F64
    merchant_risk: F64
    merchant_chargeback: F64
    merchant_fraud_rate: F64
    merchant_txn_30d: F64


def make_population(seed: int, n_cards: int = 5000, n_merchants: int = 500) -> Population:
    """Cards and merchants drawn from ``seed``; the same seed gives the same population."""
    rng = np.random.default_rng([seed, 1])
    shares = np.array([h[1] for h in _HOMES])
    home = rng.choice(len(_HOMES), n_cards, p=shares / shares.sum())
    per_eur = np.array([h[3] for h in _HOMES])[home]
    mean = np.exp(rng.normal(np.log(45.0), 0.6, n_cards)) * per_eur
    young = rng.random(n_cards) < 0.06
    age = np.where(young, rng.uniform(1, 60, n_cards), rng.uniform(60, 3000, n_cards))
    mcc_table = np.array(_MCCS)
    kinds = rng.choice(len(_MCCS), n_merchants, p=mcc_table[:, 1] / mcc_table[:, 1].sum())
    # Every issuing country gets merchants; 15% of merchants are abroad-only countries.
    country = np.where(
        rng.random(n_merchants) < 0.85,
        rng.choice(len(_HOMES), n_merchants, p=shares / shares.sum()),
        rng.integers(len(_HOMES), len(COUNTRIES), n_merchants),
    )
    seeded = min(n_merchants, len(COUNTRIES))
    country[:seeded] = np.arange(seeded)
    bad = rng.random(n_merchants) < 0.03
    risk = np.clip(mcc_table[kinds, 4] + rng.beta(1, 12, n_merchants) + 0.4 * bad, 0.0, 1.0)
    return Population(
        seed=seed,
        card_ids=[f"card-{i:06d}" for i in range(n_cards)],
        card_home=home.astype(np.int64),
        card_mean=mean,
        card_std=mean * rng.uniform(0.4, 1.2, n_cards),
        card_activity=np.exp(rng.normal(np.log(1.5), 0.7, n_cards)),
        card_age_days=np.floor(age),
        card_compromised=rng.random(n_cards) < 0.03,
        merchant_ids=[f"merchant-{i:05d}" for i in range(n_merchants)],
        merchant_mcc=mcc_table[kinds, 0].astype(np.int64),
        merchant_country=country.astype(np.int64),
        merchant_online=mcc_table[kinds, 2],
        merchant_amount_factor=mcc_table[kinds, 3],
        merchant_risk=risk,
        merchant_chargeback=risk * 0.02 * rng.lognormal(0.0, 0.4, n_merchants),
        merchant_fraud_rate=risk * 0.04 * rng.lognormal(0.0, 0.4, n_merchants),
        merchant_txn_30d=np.round(rng.lognormal(np.log(1500), 1.0, n_merchants)),
    )


def merchant_features(pop: Population) -> dict[str, F64]:
    """Each merchant's feature values by ``MERCHANT_FIELDS`` name."""
    per_eur = np.array([h[3] for h in _HOMES] + [1.0] * len(_ABROAD))
    values = {
        "risk_score": pop.merchant_risk,
        "chargeback_rate_90d": pop.merchant_chargeback,
        "fraud_rate_90d": pop.merchant_fraud_rate,
        "txn_count_30d": pop.merchant_txn_30d,
        "amount_mean_30d": 45.0 * pop.merchant_amount_factor * per_eur[pop.merchant_country],
    }
    return {name: values[name] for name in MERCHANT_FIELDS}


def card_features(pop: Population, now_ms: int, *, seed: int | None = None) -> dict[str, F64]:
    """Each card's feature values by ``CARD_FIELDS`` name, as a cache would hold at ``now_ms``.

    Compromised cards are often under attack: recent bursts of transactions.
    """
    rng = np.random.default_rng([pop.seed if seed is None else seed, 2])
    cards = np.arange(len(pop.card_ids))
    burst = pop.card_compromised & (rng.random(cards.size) < 0.6)
    now_s = np.full(cards.size, now_ms / 1000.0)
    rows = _card_state(rng, pop, cards, now_s, burst=burst, merchant=None)
    return {name: rows[:, i] for i, name in enumerate(CARD_FIELDS)}


@dataclass(frozen=True)
class LabeledEvents:
    """Events with their hidden labels and the feature rows the cache held for each event."""

    events: list[dict[str, Any]]
    labels: npt.NDArray[np.int8]
    card_rows: F64  # [n, len(CARD_FIELDS)]
    merchant_rows: F64  # [n, len(MERCHANT_FIELDS)]


def generate_events(
    pop: Population, n: int, *, seed: int, start_ms: int, rate_per_s: float | None = None
) -> list[dict[str, Any]]:
    """``n`` TransactionEvent dicts (every schema field present, epoch-millis event times).

    With ``rate_per_s`` events follow a Poisson process from ``start_ms``; without, they
    spread over the 7 days after ``start_ms`` with fewer at night, sorted by time.
    """
    return generate_labeled(pop, n, seed=seed, start_ms=start_ms, rate_per_s=rate_per_s).events


def generate_labeled(
    pop: Population, n: int, *, seed: int, start_ms: int, rate_per_s: float | None = None
) -> LabeledEvents:
    """Like ``generate_events``, with labels (1 = fraud) and per-event feature rows."""
    rng = np.random.default_rng([seed, 3])
    card = rng.choice(len(pop.card_ids), n, p=pop.card_activity / pop.card_activity.sum())
    t_ms = _event_times(rng, n, start_ms, rate_per_s)
    night = (t_ms // 3_600_000) % 24 < 6
    p_fraud = np.where(pop.card_compromised[card], 0.25, 0.003) * np.where(night, 3.0, 1.0)
    fraud = rng.random(n) < p_fraud
    stealth = fraud & (rng.random(n) < 0.1)  # fraud that shows none of the patterns
    loud = fraud & ~stealth

    def pattern(p: float) -> Bools:
        return loud & (rng.random(n) < p)

    home = pop.card_home[card]
    merchant = _pick_merchants(rng, pop, home, foreign=pattern(0.45) | (rng.random(n) < 0.05))
    risky = pattern(0.4)
    risky_pool = np.flatnonzero(pop.merchant_risk >= _RISKY_MERCHANT_RISK)
    if risky_pool.size:  # tiny populations may have no risky merchant
        merchant[risky] = risky_pool[rng.integers(0, risky_pool.size, int(risky.sum()))]

    channel = _channels(rng, pop, merchant, cnp=pattern(0.5))
    is_ecom = channel == _ECOM
    three_ds = np.where(rng.random(n) < np.where(loud, 0.25, 0.72), 1, -1)
    three_ds[rng.random(n) < np.where(loud, 0.15, 0.03)] = 0
    three_ds[~is_ecom] = -1
    has_device = is_ecom & (rng.random(n) < np.where(loud, 0.45, 0.88))

    factor = pop.merchant_amount_factor[merchant]
    cv = pop.card_std[card] / pop.card_mean[card]
    sigma = np.sqrt(np.log1p(cv**2))
    amount = pop.card_mean[card] * factor * np.exp(rng.normal(-0.5 * sigma**2, sigma))
    amount *= np.where(rng.random(n) < 0.015, rng.lognormal(np.log(4), 0.5, n), 1.0)
    amount *= np.where(pattern(0.55), rng.lognormal(np.log(5), 0.6, n), 1.0)
    card_test = pattern(0.08)  # fraudsters test a stolen card with a tiny amount first
    per_eur = np.array([h[3] for h in _HOMES])[home]
    amount[card_test] = rng.uniform(0.5, 3.0, int(card_test.sum())) * per_eur[card_test]
    scale = np.array([10.0 ** currency_exponent(c) for c in _CURRENCIES])
    amount_minor = np.maximum(np.round(amount * scale[home]), 1).astype(np.int64)

    burst = pattern(0.5) | (pop.card_compromised[card] & ~fraud & (rng.random(n) < 0.3))
    card_rows = _card_state(rng, pop, card, t_ms / 1000.0, burst=burst, merchant=merchant)
    young = pattern(0.15)
    card_rows[young, CARD_FIELDS.index("card_age_days")] = rng.integers(1, 30, int(young.sum()))
    m = merchant_features(pop)
    merchant_rows = np.column_stack([m[name] for name in MERCHANT_FIELDS])[merchant]

    draw = _Draw(card, merchant, t_ms, amount_minor, channel, three_ds, has_device, loud)
    events = _to_dicts(rng, pop, draw)
    return LabeledEvents(events, fraud.astype(np.int8), card_rows, merchant_rows)


def _event_times(rng: np.random.Generator, n: int, start_ms: int, rate: float | None) -> I64:
    if rate is not None:
        return start_ms + np.cumsum(rng.exponential(1000.0 / rate, n)).astype(np.int64)
    hour_w = np.where(np.arange(24) < 6, _NIGHT_WEIGHT, 1.0)
    hours = rng.choice(24, n, p=hour_w / hour_w.sum())
    offset = rng.integers(0, 7, n) * 86_400_000 + hours * 3_600_000 + rng.integers(0, 3_600_000, n)
    return np.sort(start_ms + offset).astype(np.int64)


def _pick_merchants(rng: np.random.Generator, pop: Population, home: I64, foreign: Bools) -> I64:
    order = np.argsort(pop.merchant_country, kind="stable")
    counts = np.bincount(pop.merchant_country, minlength=len(COUNTRIES))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_merchants = len(pop.merchant_ids)
    slot = starts[home] + (rng.random(home.size) * counts[home]).astype(np.int64)
    picked = order[np.minimum(slot, n_merchants - 1)]
    # Tiny populations may have no merchant in a card's country: any merchant will do.
    todo = foreign | (counts[home] == 0)
    for _ in range(8):  # redraw until abroad; a handful of rounds leaves almost none behind
        picked[todo] = rng.integers(0, n_merchants, int(todo.sum()))
        todo &= pop.merchant_country[picked] == home
    return np.asarray(picked, dtype=np.int64)


def _channels(rng: np.random.Generator, pop: Population, merchant: I64, cnp: Bools) -> I64:
    mcc = pop.merchant_mcc[merchant]
    online = (rng.random(merchant.size) < pop.merchant_online[merchant]) | cnp
    channel = np.where(online, _ECOM, _POS)
    recurring = online & np.isin(mcc, _RECURRING_MCCS) & (rng.random(merchant.size) < 0.7)
    channel[recurring] = _RECUR
    channel[(channel == _POS) & (rng.random(merchant.size) < 0.01)] = _MOTO
    channel[mcc == 6011] = _ATM
    return channel.astype(np.int64)


def _card_state(
    rng: np.random.Generator,
    pop: Population,
    card: I64,
    t_s: F64,
    *,
    burst: Bools,
    merchant: I64 | None,
) -> F64:
    """Card feature rows at times ``t_s``; ``burst`` rows show a recent spree."""
    n = card.size
    daily = pop.card_activity[card]
    extra = np.where(burst, rng.poisson(5, n) + 2, 0)
    c1h = rng.poisson(daily / 24) + extra
    c24 = rng.poisson(daily) + c1h
    c7d = rng.poisson(daily * 6) + c24
    gap = np.where(burst, rng.exponential(180.0, n), rng.exponential(86_400.0 / daily))
    home_code = country_codes([COUNTRIES[h] for h in pop.card_home[card].tolist()])
    last = home_code.copy()
    if merchant is not None:  # travellers and ongoing foreign sprees were already abroad
        here = country_codes([COUNTRIES[c] for c in pop.merchant_country[merchant].tolist()])
        last = np.where(rng.random(n) < np.where(burst, 0.4, 0.6), here, home_code)
    mean, std = pop.card_mean[card], pop.card_std[card]
    columns = {
        "txn_count_1h": c1h,
        "txn_count_24h": c24,
        "txn_count_7d": c7d,
        "amount_mean_30d": mean * rng.lognormal(0.0, 0.1, n),
        "amount_std_30d": std * rng.lognormal(0.0, 0.15, n),
        "amount_max_30d": (mean + 2.5 * std) * rng.lognormal(0.0, 0.2, n),
        "home_country": home_code,
        "last_country": last,
        "last_txn_time": np.floor(t_s - gap),
        "card_age_days": pop.card_age_days[card],
        "distinct_merchants_24h": np.maximum(1, np.round(c24 * rng.uniform(0.6, 1.0, n))),
    }
    return np.column_stack([np.asarray(columns[name], dtype=np.float64) for name in CARD_FIELDS])


@dataclass(frozen=True)
class _Draw:
    """Per-event columns drawn by ``generate_labeled``, indices into the population."""

    card: I64
    merchant: I64
    t_ms: I64
    amount_minor: I64
    channel: I64
    three_ds: I64
    has_device: Bools
    loud: Bools


def _to_dicts(rng: np.random.Generator, pop: Population, d: _Draw) -> list[dict[str, Any]]:
    card, merchant, channel = d.card, d.merchant, d.channel
    n = card.size
    raw = rng.bytes(16 * n)
    ids = [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * n, 16)]
    present = (channel == _POS) | (channel == _ATM)
    entry = _entry_modes(rng, channel)
    home = pop.card_home[card]
    billing = np.where(rng.random(n) < 0.6, home, -1)
    mismatch = d.loud & (billing >= 0) & (rng.random(n) < 0.3)
    billing[mismatch] = rng.integers(0, len(COUNTRIES), int(mismatch.sum()))
    billing[channel != _ECOM] = -1
    device = rng.integers(0, 2**62, n)
    ip = rng.integers(0x0B000000, 0xDF000000, n)
    three = {-1: None, 0: False, 1: True}
    return [
        {
            "transaction_id": tid,
            "card_id": pop.card_ids[c],
            "merchant_id": pop.merchant_ids[m],
            "event_time": t,
            "amount_minor": a,
            "currency": _CURRENCIES[h],
            "mcc": mcc,
            "merchant_country": COUNTRIES[mc],
            "channel": CHANNELS[ch],
            "entry_mode": ENTRY_MODES[em],
            "card_present": p,
            "three_ds": three[td],
            "terminal_id": f"T{m:05d}-{t % 7:02d}" if p else None,
            "acquirer_id": f"4{m * 7919 % 100000:05d}",
            "device_id": f"dev-{dev:016x}" if dv else None,
            "ip_address": _ipv4(i) if ch == _ECOM else None,
            "billing_country": COUNTRIES[b] if b >= 0 else None,
            "is_recurring": ch == _RECUR,
        }
        for tid, c, m, t, a, h, mcc, mc, ch, em, p, td, dv, dev, i, b in zip(
            ids,
            card.tolist(),
            merchant.tolist(),
            d.t_ms.tolist(),
            d.amount_minor.tolist(),
            home.tolist(),
            pop.merchant_mcc[merchant].tolist(),
            pop.merchant_country[merchant].tolist(),
            channel.tolist(),
            entry.tolist(),
            present.tolist(),
            d.three_ds.tolist(),
            d.has_device.tolist(),
            device.tolist(),
            ip.tolist(),
            billing.tolist(),
            strict=True,
        )
    ]


def _ipv4(i: int) -> str:
    return f"{i >> 24}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


_ENTRY_BY_CHANNEL = {  # (entry mode, probability) per channel
    _POS: (("CHIP", 0.4), ("CONTACTLESS", 0.42), ("TOKENIZED_WALLET", 0.14), ("MAGSTRIPE", 0.04)),
    _ECOM: (("CREDENTIAL_ON_FILE", 0.45), ("MANUAL", 0.4), ("TOKENIZED_WALLET", 0.15)),
    _ATM: (("CHIP", 0.97), ("MAGSTRIPE", 0.03)),
    _MOTO: (("MANUAL", 1.0),),
    _RECUR: (("CREDENTIAL_ON_FILE", 1.0),),
}


def _entry_modes(rng: np.random.Generator, channel: I64) -> I64:
    entry = np.full(channel.size, ENTRY_MODES.index("UNKNOWN"), dtype=np.int64)
    for ch, table in _ENTRY_BY_CHANNEL.items():
        rows = np.flatnonzero(channel == ch)
        codes = [ENTRY_MODES.index(mode) for mode, _ in table]
        entry[rows] = rng.choice(codes, rows.size, p=[p for _, p in table])
    return entry
