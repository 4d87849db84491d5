"""Velocity features: the one definition the stream and the offline builder both call. Pure.

``fold`` takes a micro-batch's events (columns, in input order) and each card's stored
state (``velocity_state``), and returns every event's velocity values in ``CARD_FIELDS``
units, the outcome of each event, and the new states of the cards that changed.

The rules
---------
*Earlier* means earlier in the input partition (the key is the card id): each event has a
``position`` (its Kafka offset; for a plain file, its index in the file). The features of
event e (card c, event time t, position p) are a function of c's earlier accepted events
only (position < p, the *view*); e itself never counts, and events of one card inside a
batch see each other in order.

- ``txn_count_1h``, ``txn_count_24h``: view entries with ``t - W < t' <= t`` (exact, ms).
  An earlier event stamped after t does not count. ``distinct_merchants_24h``: distinct
  merchant ids among the 24-hour entries.
- ``txn_count_7d`` and the 30-day amount statistics (mean, population standard deviation,
  max, in major units) count whole UTC days: entries with ``t' <= t`` whose day
  ``t' // 86_400_000`` is one of the 7 (30) days ending with t's day. Amounts are kept
  in thousandths of the major unit and the statistics are computed exactly, rounded
  once. Over no entry they are NaN.
- ``last_txn_time`` (epoch seconds) and ``last_country`` (``country_code``): the view
  entry with the greatest (t', position) among those with ``t' <= t``; 0 when none.

Outcomes
--------
A card's state is a log of exact entries, day tiles, ``high`` (the highest position seen)
and ``newest`` (the greatest event time seen). For each event, in order:

- REPLAY, ``p <= high`` (a rewind, a restart, an aborted transaction, a second
  instance): features from the view; the state is left alone.
- DUPLICATE, its transaction id is in the log: features from the view; no entry is
  added, but ``high`` and ``newest`` move, so that its own replays are REPLAYs.
- NEW, or LATE when t is more than ``LATENESS_MS`` (1 h) before ``newest``: features
  from the view, then the event is added to the log.

After each non-replay event, entries leave the log from the front only (lowest position
first) into their day tile while the front entry is at least ``HORIZON_MS`` (25 h) older
than ``newest`` or the log holds more than ``LOG_CAP`` entries; tiles of days before the
30-day window of ``newest - LATENESS_MS`` are dropped. Tiles count by day, as the 7- and
30-day windows do, and the latest tiled entry is kept for ``last_*``, so moving an entry
into a tile changes no feature of an event that is not LATE.

Guarantees
----------
- Convergence: a card's state depends only on the card's events up to ``high``, in
  order, whatever the batches, rewinds, replays, restarts and concurrent instances (an
  event's effect depends only on the state and the event; replays change nothing). A
  compare-and-set on ``high`` keeps a stale instance from writing an older state.
- Exactness: an event that is not LATE gets exactly the definition above, and so does
  any replay of it while ``newest`` is at most ``LATENESS_MS`` past its time, the card's
  log never held more than ``LOG_CAP`` entries, and no LATE event of the card came after
  it. A LATE event's 1 h / 24 h windows and last transaction may miss entries already in
  tiles, and its day windows may count tiled entries stamped after it.
- Deduplication: a repeated transaction id is recognised while its first occurrence is
  in the log (at least 25 h of event time and up to ``LOG_CAP`` entries); an older repeat
  counts as a new transaction.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from operator import mul
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.features.velocity_state import (
    NO_TIME,
    CardState,
    merchant_hash,
    pack,
    txn_hash,
    unpack,
)

VELOCITY_FIELDS: tuple[str, ...] = (
    "txn_count_1h",
    "txn_count_24h",
    "txn_count_7d",
    "distinct_merchants_24h",
    "amount_mean_30d",
    "amount_std_30d",
    "amount_max_30d",
    "last_country",
    "last_txn_time",
)
"""The ``CARD_FIELDS`` the velocity state produces (same names, same units), in the order
of ``VelocityBatch.values``' columns."""

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
LATENESS_MS = HOUR_MS
"""How far behind a card's newest event an event may be and still get exact features."""
HORIZON_MS = 24 * HOUR_MS + LATENESS_MS
"""Entries this much older than the card's newest event leave the log for day tiles."""
LOG_CAP = 512
"""Most entries a card's log keeps; beyond it the oldest positions go to tiles."""
TILE_DAYS = 30
"""Tiles are kept for the 30-day window of the newest time less ``LATENESS_MS`` (the
earliest time an event that is not LATE can have), older ones are dropped."""
_LAST_DAY = 0xFFFF  # a tile's day is a u16: days since 1970, up to June 2149
_AMOUNT_LIMIT = 1 << 40  # thousandths of a major unit: 1.1e9 major units, beyond any payment
_COUNTRY_LIMIT = 0xFFFF
_U16_MAX = (1 << 16) - 1
_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
_I64_MAX = (1 << 63) - 1


class Outcome(IntEnum):
    """What happened to an event's card state (``VelocityBatch.outcomes``)."""

    NEW = 0
    DUPLICATE = 1
    REPLAY = 2
    LATE = 3


@dataclass(frozen=True)
class VelocityBatch:
    """The result of one ``fold``.

    ``values`` is ``[n, len(VELOCITY_FIELDS)]`` float64, row i for event i; ``outcomes``
    one ``Outcome`` per event (int8); ``updates`` the new state bytes of each card whose
    state changed, and ``positions`` its new ``high_position`` (for the CAS write);
    ``corrupt`` how many stored states could not be read (treated as empty).
    """

    values: npt.NDArray[np.float64]
    outcomes: npt.NDArray[np.int8]
    updates: dict[str, bytes] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    corrupt: int = 0


def fold(
    states: Mapping[str, bytes | None],
    card_ids: Sequence[str],
    transaction_ids: Sequence[str],
    positions: Sequence[int] | npt.NDArray[np.integer[Any]],
    event_times_ms: Sequence[int] | npt.NDArray[np.integer[Any]],
    amounts: Sequence[float] | npt.NDArray[np.floating[Any]],
    merchant_ids: Sequence[str],
    countries: Sequence[float] | npt.NDArray[np.floating[Any]],
    *,
    log_cap: int = LOG_CAP,
) -> VelocityBatch:
    """Each event's velocity values, in batch order, and the cards' new states.

    ``states`` maps each card id of the batch to its stored bytes (None when absent; a
    card missing from the mapping is read as absent). Amounts are in major units;
    countries are ``country_code`` numbers; positions must be >= 0 and, within a card,
    follow the partition's order. Amounts are kept to a thousandth of a major unit.
    """
    n = len(card_ids)
    pos = (np.asarray(positions, dtype=np.int64) + 1).tolist()  # the state keeps them + 1
    times = np.asarray(event_times_ms, dtype=np.int64).tolist()
    if n and (min(pos) < 1 or min(times) < 0):
        raise ValueError("positions and event times must be >= 0")
    money = np.asarray(amounts, dtype=np.float64)
    milli = np.clip(np.nan_to_num(np.rint(money * 1000.0)), -_AMOUNT_LIMIT, _AMOUNT_LIMIT)
    amts = milli.astype(np.int64).tolist()
    codes = np.nan_to_num(np.asarray(countries, dtype=np.float64))
    ctry = np.clip(codes, 0, _COUNTRY_LIMIT).astype(np.int64).tolist()
    groups: dict[str, list[int]] = {}
    for i, card in enumerate(card_ids):
        groups.setdefault(card, []).append(i)
    rows: list[tuple[float, ...]] = [()] * n
    outcomes = [0] * n
    updates: dict[str, bytes] = {}
    highs: dict[str, int] = {}
    corrupt = 0
    for card, idx in groups.items():
        state = unpack(states.get(card))
        if state is None:
            corrupt += 1
            state = CardState()
        changed = False
        for i in idx:
            p, t = pos[i], times[i]
            if p <= state.high:
                rows[i] = features(view(state, p), t)
                outcomes[i] = Outcome.REPLAY
                continue
            rows[i] = features(state, t)
            h = txn_hash(transaction_ids[i])
            if h in state.txns:  # no entry, but its position and time count as seen
                outcomes[i] = Outcome.DUPLICATE
                state.high, state.newest = p, max(state.newest, t)
            else:
                late = state.newest != NO_TIME and t < state.newest - LATENESS_MS
                outcomes[i] = Outcome.LATE if late else Outcome.NEW
                add(state, p, t, amts[i], h, merchant_hash(merchant_ids[i]), ctry[i])
            evict(state, log_cap)
            changed = True
        if changed:
            updates[card] = pack(state)
            highs[card] = state.high - 1
    values = np.array(rows, dtype=np.float64).reshape(n, len(VELOCITY_FIELDS))
    return VelocityBatch(values, np.array(outcomes, dtype=np.int8), updates, highs, corrupt)


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
    amounts = s.amounts[a30:b]
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


def add(s: CardState, p: int, t: int, amount: int, txn: int, merchant: int, country: int) -> None:
    """Append an accepted event to the log (kept sorted by time, then position: ``p`` is
    above every position in the log, so it goes after entries with the same time)."""
    j = bisect_right(s.times, t)
    s.times.insert(j, t)
    s.positions.insert(j, p)
    s.amounts.insert(j, amount)
    s.txns.insert(j, txn)
    s.merchants.insert(j, merchant)
    s.countries.insert(j, country)
    s.high = p
    s.newest = max(s.newest, t)


def evict(s: CardState, log_cap: int) -> None:
    """Move front entries (lowest position first) into day tiles while the front is at
    least ``HORIZON_MS`` older than the newest event or the log exceeds ``log_cap``; then
    drop tiles more than ``TILE_DAYS`` before the newest day."""
    limit = s.newest - HORIZON_MS
    positions = s.positions
    while positions:
        j = positions.index(min(positions))
        t = s.times[j]
        if t > limit and len(positions) <= log_cap:
            break
        _into_tile(s, min(t // DAY_MS, _LAST_DAY), s.amounts[j])
        if t >= s.tiled_last:  # evicted in position order: the later position wins a tie
            s.tiled_last, s.tiled_last_country = t, s.countries[j]
        for column in s.log_columns():
            del column[j]
    first = bisect_left(s.days, (s.newest - LATENESS_MS) // DAY_MS - TILE_DAYS + 1)
    if first:
        for column in s.tile_columns():
            del column[:first]


def _into_tile(s: CardState, day: int, amount: int) -> None:
    """Add one amount to its day's tile. Counts and sums saturate at their field's limits
    (65,535 transactions a day, an i64 sum of thousandths, 2**96 for a sum of squares):
    beyond any real card, and bytes from Redis must never make a fold raise."""
    square = amount * amount
    k = bisect_left(s.days, day)
    if k < len(s.days) and s.days[k] == day:
        s.counts[k] = min(s.counts[k] + 1, _U16_MAX)
        s.sums[k] = min(max(s.sums[k] + amount, -_I64_MAX), _I64_MAX)
        s.maxes[k] = max(s.maxes[k], amount)
        low = s.sq_lo[k] + (square & _U64_MAX)
        s.sq_lo[k] = low & _U64_MAX
        s.sq_hi[k] = min(s.sq_hi[k] + (square >> 64) + (low >> 64), _U32_MAX)
        return
    for column, value in zip(
        s.tile_columns(), (day, 1, amount, amount, square & _U64_MAX, square >> 64), strict=True
    ):
        column.insert(k, value)
