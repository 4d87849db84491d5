"""How a card's velocity state changes: adding an accepted event, and eviction. Pure.

The log keeps exact entries for the windows that need them (1 h, 24 h, the last
transaction, deduplication); entries leave it from the front only (lowest position first)
for their UTC day's tile once they are ``HORIZON_MS`` older than the card's newest event
and ``REWIND_SPAN`` positions behind its highest, or when the log passes ``LOG_CAP``.
Front-only and the span keep every entry at or after a rewind point in the log, so a
replay's view (the entries before its position) can be cut out of a later state. Tiles
count by day, as the 7- and 30-day windows do, so an entry's move into its tile changes no
feature of an event that is not LATE (``streamer.features.velocity``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from streamer.features.velocity_state import DAY_MS, HOUR_MS, CardState

LATENESS_MS = HOUR_MS
"""How far behind a card's newest event an event may be and still get exact features."""
HORIZON_MS = 24 * HOUR_MS + LATENESS_MS
"""Entries this much older than the card's newest event leave the log for day tiles."""
LOG_CAP = 512
"""Most entries a card's log keeps; beyond it the oldest positions go to tiles."""
REWIND_SPAN = 50_000
"""An entry also stays in the log until it is this many positions (offsets of its
partition) behind the card's highest: a rewind (kill -9, rebalance, aborted transaction)
goes back at most the outputs in flight (``STREAMER_MAX_IN_FLIGHT``, 20,000 by default),
so every entry at or after a rewind point is still exact in the log, however much event
time the replayed stretch covers (a backlog of old events)."""
TILE_DAYS = 30
"""Tiles are kept for the 30-day window of the newest time less ``LATENESS_MS`` (the
earliest time an event that is not LATE can have), older ones are dropped."""
_LAST_DAY = 0xFFFF  # a tile's day is a u16: days since 1970, up to June 2149
_U16_MAX = (1 << 16) - 1
_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
_I64_MAX = (1 << 63) - 1


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


def evict(s: CardState, log_cap: int, rewind_span: int = REWIND_SPAN) -> None:
    """Move front entries (lowest position first) into day tiles while the front is at
    least ``HORIZON_MS`` older than the newest event and ``rewind_span`` positions behind
    the highest, or the log exceeds ``log_cap``; then drop tiles more than ``TILE_DAYS``
    before the newest day."""
    limit = s.newest - HORIZON_MS
    # The log is sorted by time: when its first time is newer than the limit, so is the
    # front entry's, and a log within the cap keeps it (the common case: nothing moves).
    if len(s.positions) > log_cap or (s.positions and s.times[0] <= limit):
        _evict_front(s, limit, s.high - rewind_span, log_cap)
    first = bisect_left(s.days, (s.newest - LATENESS_MS) // DAY_MS - TILE_DAYS + 1)
    if first:
        for column in s.tile_columns():
            del column[:first]


def _evict_front(s: CardState, limit: int, settled: int, log_cap: int) -> None:
    """``evict``'s moves of front entries into their tiles."""
    positions = s.positions
    while positions:
        j = positions.index(min(positions))
        t = s.times[j]
        if (t > limit or positions[j] > settled) and len(positions) <= log_cap:
            break
        _into_tile(s, min(max(t // DAY_MS, 0), _LAST_DAY), s.amounts[j])  # bytes may lie
        if t >= s.tiled_last:  # evicted in position order: the later position wins a tie
            s.tiled_last, s.tiled_last_country = t, s.countries[j]
        for column in s.log_columns():
            del column[j]


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
        s.tile_columns(),
        (day, 1, amount, amount, square & _U64_MAX, min(square >> 64, _U32_MAX)),
        strict=True,
    ):
        column.insert(k, value)
