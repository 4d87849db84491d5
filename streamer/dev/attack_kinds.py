"""The event columns of synthetic card behaviour: normal traffic and each attack kind. Pure.

Every drawer returns a ``Part``: columns of events (indices into the population, event
times, amounts in major units of the card's currency, channel and authentication
fields) plus, per event, its kind, the attack it belongs to and its index in that attack.
``streamer.dev.attacks`` draws the parts, joins them and turns them into events.

The attacks follow what fraud teams see:

- card testing: a stolen card tried with 10-30 tiny online payments at as many
  different merchants within a few minutes, to learn whether it works;
- account takeover: a few large online payments from a country the card has not been
  used in, soon after the credentials changed hands;
- bust-out: a cardholder builds trust with rising amounts over several days, then
  spends as much as possible in a few hours.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import numpy.typing as npt

from streamer.dev import synth

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Rng = np.random.Generator

KINDS: tuple[str, ...] = ("normal", "card_testing", "account_takeover", "bust_out", "other")
"""Event kinds, by code: ``History.kinds`` holds indices into this tuple. ``other`` is
single-event fraud with the snapshot era's patterns (foreign or risky merchant, card not
present without 3-D Secure, an amount spike), so a model keeps those signals too."""
NORMAL, CARD_TESTING, ACCOUNT_TAKEOVER, BUST_OUT, OTHER = range(len(KINDS))
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_ECOM, _POS = synth._ECOM, synth._POS
_PER_EUR = np.array([h[3] for h in synth._HOMES])
_HOURLY = np.where(np.arange(24) < 6, synth._NIGHT_WEIGHT, 1.0)


@dataclass(frozen=True)
class Part:
    """Columns of some events, one row per event (see the module docstring)."""

    card: I64
    merchant: I64
    t_ms: I64
    amount: F64
    channel: I64
    three_ds: I64
    has_device: Bools
    kind: I64
    attack: I64
    index: I64

    def __len__(self) -> int:
        return int(self.card.size)


def empty() -> Part:
    """A part of no events."""
    none = np.empty(0, dtype=np.int64)
    return Part(none, none, none, np.empty(0), none, none, np.empty(0, bool), none, none, none)


def join(parts: list[Part]) -> Part:
    """All parts' rows, in the order given."""
    return Part(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Part)))


def take(part: Part, rows: I64) -> Part:
    """The given rows of ``part``, in that order."""
    return Part(*(getattr(part, f.name)[rows] for f in fields(Part)))


def _part(
    rng: Rng,
    pop: synth.Population,
    card: I64,
    merchant: I64,
    t_ms: I64,
    amount: F64,
    *,
    kind: int,
    attack: I64,
    index: I64,
    suspicious: bool,
    online: bool | None = None,
) -> Part:
    """A part with channel, 3-D Secure and device drawn as synth draws them (``suspicious``
    for fraud: authentication skipped or failed, no device; and card not present unless
    ``online`` says otherwise)."""
    n = card.size
    cnp = suspicious if online is None else online
    channel = synth._channels(rng, pop, merchant, cnp=np.full(n, cnp))
    three_ds = np.where(rng.random(n) < (0.25 if suspicious else 0.72), 1, -1)
    three_ds[rng.random(n) < (0.15 if suspicious else 0.03)] = 0
    three_ds[channel != _ECOM] = -1
    has_device = (channel == _ECOM) & (rng.random(n) < (0.45 if suspicious else 0.88))
    return Part(
        card, merchant, t_ms.astype(np.int64), amount, channel, three_ds.astype(np.int64),
        has_device, np.full(n, kind, dtype=np.int64), attack, index,
    )  # fmt: skip


def _amounts(rng: Rng, pop: synth.Population, card: I64, merchant: I64) -> F64:
    """Amounts around the card's mean, scaled by the merchant's category (as synth)."""
    cv = pop.card_std[card] / pop.card_mean[card]
    sigma = np.sqrt(np.log1p(cv**2))
    base = pop.card_mean[card] * pop.merchant_amount_factor[merchant]
    return np.asarray(base * np.exp(rng.normal(-0.5 * sigma**2, sigma)), dtype=np.float64)


def _times_of_day(rng: Rng, n: int, day_start_ms: I64) -> I64:
    hours = rng.choice(24, n, p=_HOURLY / _HOURLY.sum())
    return day_start_ms + hours * HOUR_MS + rng.integers(0, HOUR_MS, n)


def normal(rng: Rng, pop: synth.Population, days: int, start_ms: int) -> Part:
    """Every card's own traffic: Poisson(daily activity) events a day, fewer at night;
    70% at one of the card's six regular merchants, 27% at other merchants of its home
    country, 3% abroad (travel); amounts around the card's mean."""
    n_cards = len(pop.card_ids)
    per_day = rng.poisson(np.repeat(pop.card_activity, days)).reshape(n_cards, days)
    card = np.repeat(np.arange(n_cards), per_day.sum(axis=1))
    day = np.concatenate([np.repeat(np.arange(days), row) for row in per_day])
    n = card.size
    t_ms = _times_of_day(rng, n, start_ms + day * DAY_MS)
    home = pop.card_home
    regulars = synth._pick_merchants(rng, pop, np.repeat(home, 6), np.zeros(6 * n_cards, bool))
    merchant = regulars.reshape(n_cards, 6)[card, rng.integers(0, 6, n)]
    roll = rng.random(n)
    other = roll >= 0.70
    merchant[other] = synth._pick_merchants(rng, pop, home[card[other]], roll[other] >= 0.97)
    amount = _amounts(rng, pop, card, merchant)
    amount *= np.where(rng.random(n) < 0.015, rng.lognormal(np.log(4), 0.5, n), 1.0)
    none = np.full(n, -1, dtype=np.int64)
    return _part(
        rng, pop, card, merchant, t_ms, amount, kind=NORMAL, attack=none, index=none,
        suspicious=False,
    )  # fmt: skip


def lookalikes(rng: Rng, pop: synth.Population, days: int, start_ms: int) -> Part:
    """Genuine traffic that looks like an attack to a naive rule: shopping sessions (on
    1.5% of card-days, 3-8 payments at different merchants of the home country within
    about an hour and a half) and trips (0.5% of card-days, 2-6 payments of 1.5-3x the
    usual amounts in one foreign country over the day)."""
    n_cards = len(pop.card_ids)
    parts = []
    for share, low, high, abroad in ((0.015, 3, 9, False), (0.005, 2, 7, True)):
        picked = np.flatnonzero(rng.random(n_cards * days) < share)
        sizes = rng.integers(low, high, picked.size)
        card = np.repeat(picked // days, sizes)
        session = np.repeat(np.arange(picked.size), sizes)
        t0 = _times_of_day(rng, picked.size, start_ms + picked % days * DAY_MS)
        spread = (12 if abroad else 1.5) * HOUR_MS
        t_ms = np.minimum(
            t0[session] + rng.integers(0, int(spread), card.size), start_ms + days * DAY_MS - 1
        )
        home = pop.card_home[card]
        merchant = synth._pick_merchants(rng, pop, home, np.full(card.size, abroad))
        if abroad:  # one foreign country per trip: the trip's first merchant's
            country = pop.merchant_country[
                merchant[np.searchsorted(session, np.arange(picked.size))]
            ]
            for s, c in enumerate(country.tolist()):
                pool = np.flatnonzero(pop.merchant_country == c)
                rows = np.flatnonzero(session == s)
                merchant[rows] = pool[rng.integers(0, pool.size, rows.size)]
        amount = _amounts(rng, pop, card, merchant) * (
            rng.uniform(1.5, 3.0, card.size) if abroad else 1.0
        )
        none = np.full(card.size, -1, dtype=np.int64)
        parts.append(_part(
            rng, pop, card, merchant, t_ms, amount, kind=NORMAL, attack=none, index=none,
            suspicious=False,
        ))  # fmt: skip
    return join(parts)


def other_fraud(rng: Rng, pop: synth.Population, cards: I64, times: I64, first: int) -> Part:
    """Single fraudulent events at ``times`` on ``cards`` with synth's fraud patterns,
    each drawn independently, attack ids from ``first``."""
    n = cards.size
    home = pop.card_home[cards]
    merchant = synth._pick_merchants(rng, pop, home, rng.random(n) < 0.45)
    risky_pool = np.flatnonzero(pop.merchant_risk >= synth._RISKY_MERCHANT_RISK)
    risky = rng.random(n) < 0.4
    if risky_pool.size:
        merchant[risky] = risky_pool[rng.integers(0, risky_pool.size, int(risky.sum()))]
    amount = _amounts(rng, pop, cards, merchant)
    amount *= np.where(rng.random(n) < 0.55, rng.lognormal(np.log(5), 0.6, n), 1.0)
    ids = first + np.arange(n, dtype=np.int64)
    return _part(
        rng, pop, cards, merchant, times, amount, kind=OTHER, attack=ids,
        index=np.zeros(n, dtype=np.int64), suspicious=True,
    )  # fmt: skip


def card_testing(
    rng: Rng, pop: synth.Population, card: int, t0: int, attack: int, seen: I64
) -> Part:
    """10-30 small online payments (1-15 EUR-equivalent, log-uniform) at as many distinct
    merchants, 2-45 s apart. Each one looks like a genuine small online purchase at home
    (quiet domestic merchants first; 3-D Secure and device fingerprints as often as
    genuine ones): only the burst gives them away (``seen``: unused, as for every drawer
    but account takeover)."""
    k = int(rng.integers(10, 31))
    home = pop.merchant_country == pop.card_home[card]
    quiet = pop.merchant_risk < synth._RISKY_MERCHANT_RISK
    tier = np.where(home & quiet & (pop.merchant_online >= 0.3), 0, 3)
    tier = np.minimum(tier, np.where(home & quiet, 1, np.where(home, 2, 3)))
    order = np.lexsort((rng.random(tier.size), tier))  # best tier first, random within
    merchant = order[:k].astype(np.int64)
    gaps = np.clip(rng.exponential(15_000.0, k), 2_000, 45_000).astype(np.int64)
    gaps[0] = 0
    cards = np.full(k, card, dtype=np.int64)
    amount = np.exp(rng.uniform(0.0, np.log(15.0), k)) * _PER_EUR[pop.card_home[card]]
    part = _part(
        rng, pop, cards, merchant, t0 + np.cumsum(gaps), amount, kind=CARD_TESTING,
        attack=np.full(k, attack, dtype=np.int64), index=np.arange(k), suspicious=False,
        online=True,
    )  # fmt: skip
    # Online whatever the merchant's usual channel; authentication as genuine online.
    three_ds = np.where(rng.random(k) < 0.72, 1, -1)
    three_ds[rng.random(k) < 0.03] = 0
    device = rng.random(k) < 0.88
    return replace(
        part, channel=np.full(k, _ECOM, dtype=np.int64), three_ds=three_ds, has_device=device
    )


def account_takeover(
    rng: Rng, pop: synth.Population, card: int, t0: int, attack: int, seen: I64
) -> Part:
    """1-4 payments of 3-15x the card's mean amount at merchants of one country that is
    neither the card's home nor among the ``seen`` countries of its other events, minutes
    apart, online with the account's own credentials (authentication and device look
    genuine)."""
    k = int(rng.integers(1, 5))
    home = int(pop.card_home[card])
    countries = np.unique(pop.merchant_country)
    abroad = countries[(countries != home) & ~np.isin(countries, seen)]
    if abroad.size == 0:  # a card that has been everywhere: any foreign country
        abroad = countries[countries != home]
    country = int(abroad[rng.integers(0, abroad.size)])
    pool = np.flatnonzero(pop.merchant_country == country)
    merchant = pool[rng.integers(0, pool.size, k)].astype(np.int64)
    gaps = rng.exponential(8 * MINUTE_MS, k).astype(np.int64)
    gaps[0] = 0
    amount = pop.card_mean[card] * np.clip(rng.lognormal(np.log(6), 0.4, k), 3.0, 15.0)
    return _part(
        rng, pop, np.full(k, card, dtype=np.int64), merchant, t0 + np.cumsum(gaps), amount,
        kind=ACCOUNT_TAKEOVER, attack=np.full(k, attack, dtype=np.int64), index=np.arange(k),
        suspicious=False, online=True,
    )  # fmt: skip


def bust_out(rng: Rng, pop: synth.Population, card: int, t0: int, attack: int, seen: I64) -> Part:
    """Two payments a day over the 3-6 days before ``t0`` rising from the card's mean to
    3x it, then a spree of 5-12 payments of 4-10x the mean within about two hours, at
    merchants of the card's home country in big-ticket categories (``seen``: unused)."""
    ramp_days = int(rng.integers(3, 7))
    ramp_n = 2 * ramp_days
    day0 = t0 // DAY_MS * DAY_MS - ramp_days * DAY_MS
    ramp_t = np.sort(_times_of_day(rng, ramp_n, day0 + np.repeat(np.arange(ramp_days), 2) * DAY_MS))
    spree_n = int(rng.integers(5, 13))
    gaps = rng.exponential(10 * MINUTE_MS, spree_n).astype(np.int64)
    gaps[0] = 0
    t_ms = np.concatenate([ramp_t, t0 + np.cumsum(gaps)])
    home = pop.card_home[card]
    pool = np.flatnonzero((pop.merchant_country == home) & (pop.merchant_amount_factor >= 1.4))
    if pool.size == 0:
        pool = np.arange(len(pop.merchant_ids))
    k = ramp_n + spree_n
    merchant = pool[rng.integers(0, pool.size, k)].astype(np.int64)
    mean = pop.card_mean[card]
    rising = mean * np.exp(np.linspace(0.0, np.log(3.0), ramp_n)) * rng.lognormal(0, 0.15, ramp_n)
    spree = mean * rng.uniform(4.0, 10.0, spree_n)
    return _part(
        rng, pop, np.full(k, card, dtype=np.int64), merchant, t_ms,
        np.concatenate([rising, spree]), kind=BUST_OUT, attack=np.full(k, attack, dtype=np.int64),
        index=np.arange(k), suspicious=False,
    )  # fmt: skip
