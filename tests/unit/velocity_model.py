"""Brute-force models of the velocity rules, written from the rules' text with plain lists.

``definition`` recomputes each event's features from the list of its card's earlier
accepted events, as the rules define them (no log, no tiles): the promise for histories
without late events. ``TiledModel`` also keeps the state's log/tile split, entry by entry,
as the eviction rule describes it: the promise for any history, late events included.
Both compute amount statistics exactly from thousandths of the major unit, rounding once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamer.features.velocity import (
    DAY_MS,
    HORIZON_MS,
    HOUR_MS,
    LATENESS_MS,
    LOG_CAP,
    TILE_DAYS,
    Outcome,
    VelocityBatch,
    fold,
)

NAN = math.nan


@dataclass(frozen=True)
class Event:
    """One input event: its card, transaction id, position, time (ms), amount (major
    units), merchant and country code."""

    card: str
    txn: str
    pos: int
    t: int
    amount: float = 10.0
    merchant: str = "m1"
    country: int = 1

    @property
    def milli(self) -> int:
        return round(self.amount * 1000)


def fold_events(
    events: Sequence[Event], states: Mapping[str, bytes | None] | None = None, **kw: int
) -> VelocityBatch:
    """``fold`` over events given as ``Event`` objects (eviction by event time alone unless
    ``rewind_span`` is given, as the models here describe it)."""
    kw.setdefault("rewind_span", 0)
    return fold(
        states or {},
        [e.card for e in events],
        [e.txn for e in events],
        [e.pos for e in events],
        [e.t for e in events],
        [e.amount for e in events],
        [e.merchant for e in events],
        [float(e.country) for e in events],
        **kw,
    )


def run_batches(
    events: Sequence[Event], sizes: Iterable[int] = (), store: dict[str, bytes] | None = None
) -> tuple[np.ndarray, list[int], dict[str, bytes]]:
    """Fold ``events`` in batches of the given sizes (the rest in one last batch), each
    batch from the states the previous ones left, as the stream does."""
    store = {} if store is None else store
    rows, outcomes, start = [], [], 0
    for size in [*sizes, len(events)]:
        chunk = events[start : start + size]
        start += len(chunk)
        if not chunk:
            continue
        batch = fold_events(chunk, {e.card: store.get(e.card) for e in chunk})
        store.update(batch.updates)
        rows.append(batch.values)
        outcomes.extend(batch.outcomes.tolist())
    values = np.concatenate(rows) if rows else np.empty((0, 9))
    return values, outcomes, store


def stats(view: Sequence[Event], t: int, keep_amount: Iterable[Event]) -> list[float]:
    """The nine values from exact windows over ``view`` and the 30-day entries given."""
    day = t // DAY_MS
    upto = [x for x in view if x.t <= t]
    h1 = [x for x in upto if x.t > t - HOUR_MS]
    h24 = [x for x in upto if x.t > t - 24 * HOUR_MS]
    d7 = [x for x in upto if x.t // DAY_MS > day - 7]
    amounts = [x.milli for x in keep_amount]
    n, s, q = len(amounts), sum(amounts), sum(a * a for a in amounts)
    mean = s / (1000 * n) if n else NAN
    std = math.sqrt((n * q - s * s) / (n * n * 1_000_000)) if n else NAN
    top = max(amounts) / 1000 if n else NAN
    last = max(upto, key=lambda x: (x.t, x.pos), default=None)
    return [
        len(h1),
        len(h24),
        len(d7),
        len({x.merchant for x in h24}),
        mean,
        std,
        top,
        float(last.country) if last else 0.0,
        last.t / 1000 if last else 0.0,
    ]


def definition(events: Sequence[Event]) -> tuple[list[list[float]], list[int]]:
    """Each event's features and outcome by the rules, from its card's earlier accepted
    events (first processing, events in input order; no event is late)."""
    accepted: dict[str, list[Event]] = {}
    rows, outcomes = [], []
    for e in events:
        view = [x for x in accepted.get(e.card, []) if x.pos < e.pos]
        day = e.t // DAY_MS
        month = [x for x in view if x.t <= e.t and x.t // DAY_MS > day - 30]
        rows.append(stats(view, e.t, month))
        if any(x.txn == e.txn for x in accepted.get(e.card, [])):
            outcomes.append(Outcome.DUPLICATE)
        else:
            accepted.setdefault(e.card, []).append(e)
            outcomes.append(Outcome.NEW)
    return rows, outcomes


@dataclass
class _Card:
    log: list[Event] = field(default_factory=list)  # position order
    tiled: list[Event] = field(default_factory=list)
    newest: int = -1
    high: int = -1
    tiled_last: tuple[int, int] | None = None  # (time, country)


class TiledModel:
    """The state as the rules describe it, one event at a time: a log in position order,
    tiled entries (kept whole here, summed by day when read), front-only eviction (by
    event time, and by ``rewind_span`` positions behind the highest when given)."""

    def __init__(self, log_cap: int = LOG_CAP, rewind_span: int = 0) -> None:
        self.cards: dict[str, _Card] = {}
        self.log_cap = log_cap
        self.rewind_span = rewind_span

    def process(self, e: Event) -> tuple[list[float], int]:
        c = self.cards.setdefault(e.card, _Card())
        row = self._features(c, e)
        if e.pos <= c.high:
            return row, Outcome.REPLAY
        outcome = Outcome.DUPLICATE
        if not any(x.txn == e.txn for x in c.log):
            late = c.newest >= 0 and e.t < c.newest - LATENESS_MS
            outcome = Outcome.LATE if late else Outcome.NEW
            c.log.append(e)
        c.high, c.newest = e.pos, max(c.newest, e.t)
        while c.log and (self._settled(c, c.log[0]) or len(c.log) > self.log_cap):
            x = c.log.pop(0)
            c.tiled.append(x)
            if c.tiled_last is None or x.t >= c.tiled_last[0]:
                c.tiled_last = (x.t, x.country)
        first_day = (c.newest - LATENESS_MS) // DAY_MS - TILE_DAYS + 1
        c.tiled = [x for x in c.tiled if x.t // DAY_MS >= first_day]
        return row, outcome

    def _settled(self, c: _Card, x: Event) -> bool:
        """Old enough for its tile: 25 h of event time and the rewind span behind."""
        return x.t <= c.newest - HORIZON_MS and x.pos <= c.high - self.rewind_span

    @staticmethod
    def _features(c: _Card, e: Event) -> list[float]:
        view = [x for x in c.log if x.pos < e.pos]
        day = e.t // DAY_MS
        month = [x for x in view if x.t <= e.t and x.t // DAY_MS > day - 30]
        month += [x for x in c.tiled if day - 30 < x.t // DAY_MS <= day]
        row = stats(view, e.t, month)
        row[2] = len([x for x in view if x.t <= e.t and x.t // DAY_MS > day - 7])
        row[2] += len([x for x in c.tiled if day - 7 < x.t // DAY_MS <= day])
        best = max((x for x in view if x.t <= e.t), key=lambda x: (x.t, x.pos), default=None)
        if c.tiled_last and c.tiled_last[0] <= e.t and (best is None or c.tiled_last[0] > best.t):
            row[7], row[8] = float(c.tiled_last[1]), c.tiled_last[0] / 1000
        return row


def same(a: Sequence[float], b: Sequence[float]) -> bool:
    """Equal value by value, NaN equal to NaN (bitwise equality of the floats)."""
    return all((x == y) or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))
