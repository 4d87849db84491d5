"""The velocity windows read off a card's state: one event's feature values. Pure.

``features`` computes the nine ``VELOCITY_FIELDS`` for an event time from a state whose
log is the event's view (``view`` cuts a replay's view out of a later state). The log is
sorted by (time, position), so every exact window is two bisections; tiles are sorted by
day. Amount statistics are exact integer arithmetic on thousandths, rounded once, so they
do not depend on which entries sit in the log and which in tiles.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from operator import mul

from streamer.features.velocity_state import DAY_MS, HOUR_MS, NO_TIME, CardState


def features(s: CardState, t: int) -> tuple[float, ...]:
    """The ``VELOCITY_FIELDS`` values at event time ``t`` over all of ``s`` (its log must
    be the event's view: see ``view``)."""
    times = s.times
    b = bisect_right(times, t)  # entries with t' <= t
    a24 = bisect_right(times, t - 24 * HOUR_MS, 0, b)
    c1 = b - bisect_right(times, t - HOUR_MS, a24, b)
    day = t // DAY_MS
    c7 = b - bisect_left(times, (day - 6) * DAY_MS, 0, b)
    a30 = bisect_left(times, (day - 29) * DAY_MS, 0, b)
    amounts = s.amounts[a30:b].tolist()  # list arithmetic beats array boxing
    count, total = len(amounts), sum(amounts)
    squares = sum(map(mul, amounts, amounts))
    top = max(amounts) if amounts else None
    days = s.days
    if days:
        hi = bisect_right(days, day)
        lo30 = bisect_right(days, day - 30, 0, hi)
        if lo30 < hi:
            counts = s.counts[lo30:hi]
            c7 += sum(counts[bisect_right(days, day - 7, lo30, hi) - lo30 :])
            count += sum(counts)
            total += sum(s.sums[lo30:hi])
            squares += sum(s.sq_lo[lo30:hi]) + (sum(s.sq_hi[lo30:hi]) << 64)
            tile_top = max(s.maxes[lo30:hi])
            top = tile_top if top is None or tile_top > top else top
    last_t, last_c = (times[b - 1], s.countries[b - 1]) if b else (NO_TIME, 0)
    if last_t < s.tiled_last <= t:  # the log wins ties: its positions are all higher
        last_t, last_c = s.tiled_last, s.tiled_last_country
    if count:
        mean = total / (1000 * count)
        spread = max(count * squares - total * total, 0)  # >= 0 unless the bytes lie
        std = math.sqrt(spread / (count * count * 1_000_000))
    else:
        mean = std = math.nan
    return (
        float(c1),
        float(b - a24),
        float(c7),
        float(len(set(s.merchants[a24:b]))),
        mean,
        std,
        math.nan if top is None else top / 1000,
        float(last_c),
        last_t / 1000 if last_t != NO_TIME else 0.0,
    )


def view(s: CardState, p: int) -> CardState:
    """``s`` restricted to log entries with position < ``p`` (a replay's view); tiles and
    the tiled last transaction are kept as they are (see the module's guarantees)."""
    keep = [j for j, q in enumerate(s.positions) if q < p]
    if len(keep) == len(s.positions):
        return s
    log = [array(c.typecode, [c[j] for j in keep]) for c in s.log_columns()]
    return CardState(s.high, s.newest, s.tiled_last, s.tiled_last_country, *log,
                     *s.tile_columns())  # fmt: skip
