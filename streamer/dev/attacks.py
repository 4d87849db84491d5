"""Synthetic card histories with labelled velocity attacks. Pure and seeded.

``make_history`` draws days of every card's normal traffic for a ``synth`` population and
injects attacks (``streamer.dev.attack_kinds``: card testing, account takeover, bust-out,
and single-event fraud with the snapshot era's patterns). Events are TransactionEvent
dicts exactly as ``synth`` makes them (every schema field, epoch-millis event times),
sorted by event time; beside them, aligned arrays say which are fraud, of which kind, in
which attack and at which step of it: what training labels and the detection table read.

``messy=True`` makes the file a stream would really see: 5% of transactions arrive twice
(the same record a little later) and 5% carry an event time up to three minutes off their
place in the file (out of order). File order stands for the partition's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.dev import attack_kinds as kinds
from streamer.dev import synth
from streamer.dev.attack_kinds import DAY_MS, KINDS, Part
from streamer.features.reference import currency_exponent

__all__ = ["KINDS", "AttackRates", "History", "make_history"]

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class AttackRates:
    """Attacks per 1,000 cards per attack day, by kind; ``other`` is the share of normal
    traffic added as single fraudulent events on compromised cards."""

    card_testing: float = 1.5
    account_takeover: float = 1.5
    bust_out: float = 0.8
    other: float = 0.004

    def scaled(self, factor: float) -> AttackRates:
        """Every rate times ``factor``."""
        return AttackRates(
            self.card_testing * factor,
            self.account_takeover * factor,
            self.bust_out * factor,
            self.other * factor,
        )


@dataclass(frozen=True)
class History:
    """Events in file order and, aligned with them, what each one is.

    ``labels`` 1 = fraud; ``kinds`` indexes ``KINDS``; ``attack_ids`` -1 for normal events;
    ``attack_index`` the event's step in its attack (0 = first), -1 for normal events;
    ``duplicate`` True for the second arrival of a transaction (messy histories only).
    """

    events: list[dict[str, Any]]
    labels: npt.NDArray[np.int8]
    kinds: npt.NDArray[np.int8]
    attack_ids: I64
    attack_index: I64
    duplicate: npt.NDArray[np.bool_]
    population: synth.Population
    start_ms: int
    days: int

    def __len__(self) -> int:
        return len(self.events)

    def kind_of(self, name: str) -> npt.NDArray[np.bool_]:
        """Which events are of kind ``name`` (one of ``KINDS``)."""
        return np.asarray(self.kinds == KINDS.index(name))


def make_history(
    pop: synth.Population,
    days: int,
    *,
    seed: int,
    start_ms: int,
    rates: AttackRates | None = None,
    attacks_from_day: int = 0,
    messy: bool = False,
) -> History:
    """``days`` days of traffic from ``start_ms`` with attacks whose main burst falls on
    day ``attacks_from_day`` or later (a bust-out's ramp starts up to six days earlier,
    never before ``start_ms``). The same arguments give the same history."""
    if not 0 <= attacks_from_day < days:
        raise ValueError(f"attacks_from_day must be in [0, {days}), got {attacks_from_day}")
    rng = np.random.default_rng([seed, 21])
    rates = rates or AttackRates()
    normal = kinds.join(
        [kinds.normal(rng, pop, days, start_ms), kinds.lookalikes(rng, pop, days, start_ms)]
    )
    other = _other(rng, pop, normal, rates.other)
    before = kinds.join([normal, other])
    attack_days = days - attacks_from_day
    attacks = _attacks(rng, pop, before, rates, attack_days, start_ms + attacks_from_day * DAY_MS)
    part = kinds.join([before, attacks])
    part = kinds.take(part, np.flatnonzero(part.t_ms >= start_ms))
    part = kinds.take(part, np.argsort(part.t_ms, kind="stable"))
    events = _events(rng, pop, part)
    duplicate = np.zeros(len(part), dtype=np.bool_)
    if messy:
        rows, duplicate, events = _messy(rng, events)
        part = kinds.take(part, rows)
    return History(
        events=events,
        labels=(part.kind != kinds.NORMAL).astype(np.int8),
        kinds=part.kind.astype(np.int8),
        attack_ids=part.attack,
        attack_index=part.index,
        duplicate=duplicate,
        population=pop,
        start_ms=start_ms,
        days=days,
    )


def _attacks(
    rng: np.random.Generator,
    pop: synth.Population,
    before: Part,
    rates: AttackRates,
    days: int,
    from_ms: int,
) -> Part:
    """Every velocity attack, each on its own card, starting anywhere in the attack days,
    numbered after the events of ``before`` (whose countries an account takeover avoids)."""
    scale = len(pop.card_ids) / 1000.0 * days
    drawers = (
        (kinds.card_testing, rates.card_testing),
        (kinds.account_takeover, rates.account_takeover),
        (kinds.bust_out, rates.bust_out),
    )
    counts = [round(rate * scale) for _, rate in drawers]
    if sum(counts) > len(pop.card_ids):
        raise ValueError(f"{sum(counts)} attacks for {len(pop.card_ids)} cards: lower the rates")
    cards = rng.permutation(len(pop.card_ids))[: sum(counts)].tolist()
    starts = (from_ms + rng.integers(0, days * DAY_MS, sum(counts))).tolist()
    first, parts = _next_id(before), list[Part]()
    for (draw, _), count in zip(drawers, counts, strict=True):
        for _ in range(count):
            card, start = cards[len(parts)], starts[len(parts)]
            seen = np.unique(pop.merchant_country[before.merchant[before.card == card]])
            parts.append(draw(rng, pop, card, start, first + len(parts), seen))
    return kinds.join(parts) if parts else kinds.empty()


def _other(rng: np.random.Generator, pop: synth.Population, normal: Part, share: float) -> Part:
    """``share`` of the normal traffic's size as single fraud events on compromised cards,
    at times like the normal traffic's but three times likelier at night."""
    pool = np.flatnonzero(pop.card_compromised)
    n = round(share * len(normal)) if pool.size else 0
    if n == 0:
        return kinds.empty()
    weight = np.where((normal.t_ms // kinds.HOUR_MS) % 24 < 6, 3.0, 1.0)
    times = rng.choice(normal.t_ms, n, p=weight / weight.sum()) + rng.integers(-600_000, 600_000, n)
    cards = pool[rng.integers(0, pool.size, n)]
    return kinds.other_fraud(rng, pop, cards.astype(np.int64), times.astype(np.int64), 0)


def _next_id(part: Part) -> int:
    return int(part.attack.max()) + 1 if len(part) else 0


def _events(rng: np.random.Generator, pop: synth.Population, part: Part) -> list[dict[str, Any]]:
    """TransactionEvent dicts through synth's own conversion (ids, entry modes, terminals,
    devices, addresses); attacks count as fraud for its billing-country mismatches."""
    home = pop.card_home[part.card]
    scale = np.array([10.0 ** currency_exponent(c) for c in synth._CURRENCIES])
    minor = np.maximum(np.round(part.amount * scale[home]), 1).astype(np.int64)
    draw = synth._Draw(
        part.card,
        part.merchant,
        part.t_ms,
        minor,
        part.channel,
        part.three_ds,
        part.has_device,
        part.kind != kinds.NORMAL,
    )
    return synth._to_dicts(rng, pop, draw)


def _messy(
    rng: np.random.Generator, events: list[dict[str, Any]]
) -> tuple[I64, npt.NDArray[np.bool_], list[dict[str, Any]]]:
    """(source row of each output event, which are second arrivals, the events in arrival
    order): 5% sent twice, 2-120 s apart; 5% with event times moved up to 3 minutes."""
    n = len(events)
    times = np.array([e["event_time"] for e in events], dtype=np.int64)
    moved = rng.random(n) < 0.05
    shifted = times + np.where(moved, rng.integers(-180_000, 180_001, n), 0)
    again = np.flatnonzero(rng.random(n) < 0.05)
    rows = np.concatenate([np.arange(n), again])
    arrival = np.concatenate([times, times[again] + rng.integers(2_000, 120_001, again.size)])
    order = np.argsort(arrival, kind="stable")
    rows = rows[order]
    duplicate = order >= n
    out = [{**events[r], "event_time": int(shifted[r])} for r in rows.tolist()]
    return rows.astype(np.int64), duplicate, out
