"""The fold's fast paths give what the plain path gives, on arbitrary batches.

A card without stored state (``None``) and a card whose stored state is an empty state's
bytes (``pack(CardState())``) have the same earlier events: none. The first takes the
fold's fast paths, the second the plain one (unpack, fold event by event, pack), so every
value, outcome, state byte and position must agree, whatever the batch: several events of
a card, duplicates, out-of-order and far-apart times, replays, amounts and countries
beyond their fields, any log cap and rewind span.
"""

from __future__ import annotations

import math
from bisect import bisect_left

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.features.velocity import fold
from streamer.features.velocity_log import HORIZON_MS, REWIND_SPAN, TILE_DAYS, add, evict
from streamer.features.velocity_log import _into_tile as into_tile
from streamer.features.velocity_state import CardState, pack, unpack

EMPTY = pack(CardState())
T0 = 1_767_225_600_000
HOUR, DAY = 3_600_000, 86_400_000

AMOUNTS = st.one_of(
    st.sampled_from([0.0, 0.001, 12.34, -5.0, 1e12, -1e12, math.nan, math.inf]),
    st.floats(-1e6, 1e6, allow_nan=False),
)
COUNTRIES = st.one_of(st.sampled_from([0.0, 1.0, 858.0, -3.0, 70_000.0, math.nan]),
                      st.integers(0, 999).map(float))  # fmt: skip
TIMES = st.one_of(
    st.sampled_from([0, 1, DAY - 1, DAY, T0, T0 + 25 * HOUR, T0 - 40 * DAY]),
    st.integers(T0 - 40 * DAY, T0 + 40 * DAY),
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[str], list[str], list[int], list[int], list[float],
                                      list[str], list[float]]:  # fmt: skip
    """Events of a few cards in input order: positions rise by 0 or more per event (a
    repeated position is a replay), transaction ids repeat (duplicates)."""
    n = draw(st.integers(1, 30))
    cards = draw(st.lists(st.sampled_from("abcdef"), min_size=n, max_size=n))
    txns = draw(st.lists(st.sampled_from(["t1", "t2", "t3", "t4", "t5", "t6"]),
                         min_size=n, max_size=n))  # fmt: skip
    steps = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    start = draw(st.sampled_from([0, 1, 2**40]))
    positions = [start + sum(steps[: i + 1]) for i in range(n)]
    times = draw(st.lists(TIMES, min_size=n, max_size=n))
    amounts = draw(st.lists(AMOUNTS, min_size=n, max_size=n))
    merchants = draw(st.lists(st.sampled_from(["m1", "m2", "é"]), min_size=n, max_size=n))
    countries = draw(st.lists(COUNTRIES, min_size=n, max_size=n))
    return cards, txns, positions, times, amounts, merchants, countries


@settings(max_examples=400, deadline=None)
@given(
    batch=batches(),
    log_cap=st.sampled_from([0, 1, 2, 512]),
    rewind_span=st.sampled_from([0, 1, REWIND_SPAN]),
)
def test_no_state_folds_as_an_empty_state(
    batch: tuple[list[str], list[str], list[int], list[int], list[float], list[str], list[float]],
    log_cap: int,
    rewind_span: int,
) -> None:
    cards = batch[0]
    fast = fold(dict.fromkeys(cards), *batch, log_cap=log_cap, rewind_span=rewind_span)
    plain = fold(dict.fromkeys(cards, EMPTY), *batch, log_cap=log_cap, rewind_span=rewind_span)
    assert fast.values.tobytes() == plain.values.tobytes()  # NaN where NaN, bit for bit
    assert fast.outcomes.tolist() == plain.outcomes.tolist()
    assert fast.updates == plain.updates
    assert fast.positions == plain.positions
    assert (fast.corrupt, plain.corrupt) == (0, 0)


def test_a_cards_first_transaction_is_one_entry_at_its_position() -> None:
    """The fast path's state is the plain path's, and reads back as one entry."""
    args = (["c"], ["t"], [7], [T0], [12.345], ["m"], [250.0])
    fast, plain = fold({}, *args), fold({"c": EMPTY}, *args)
    assert fast.updates == plain.updates
    assert fast.positions == {"c": 7}
    assert fast.values[0].tolist()[:4] == [0.0, 0.0, 0.0, 0.0]
    again = fold(fast.updates, ["c"], ["u"], [8], [T0 + 1], [1.0], ["m"], [250.0])
    assert again.values[0].tolist()[:4] == [1.0, 1.0, 1.0, 1.0]
    assert again.values[0].tolist()[4] == 12.345


def _evict_plain(s: CardState, log_cap: int, rewind_span: int) -> None:
    """The eviction rule read literally: test the front entry every time (no shortcut)."""
    limit, settled = s.newest - HORIZON_MS, s.high - rewind_span
    while s.positions:
        j = s.positions.index(min(s.positions))
        t = s.times[j]
        if (t > limit or s.positions[j] > settled) and len(s.positions) <= log_cap:
            break
        into_tile(s, min(t // DAY, 0xFFFF), s.amounts[j])
        if t >= s.tiled_last:
            s.tiled_last, s.tiled_last_country = t, s.countries[j]
        for column in s.log_columns():
            del column[j]
    first = bisect_left(s.days, (s.newest - HOUR) // DAY - TILE_DAYS + 1)
    for column in s.tile_columns():
        del column[:first]


@st.composite
def logs(draw: st.DrawFn) -> CardState:
    """A state whose log (sorted by time, then position) sits around the eviction limit:
    times at, just before and just after ``newest - HORIZON_MS``, positions in any order."""
    newest = draw(st.integers(HORIZON_MS + 1, 60 * DAY))
    limit = newest - HORIZON_MS
    near = st.sampled_from([limit - 1, limit, limit + 1, 0, newest])
    times = sorted(draw(st.lists(st.one_of(near, st.integers(0, newest)), max_size=12)))
    positions = draw(st.permutations(range(1, len(times) + 1)))
    s = CardState()
    for t, p in sorted(zip(times, positions, strict=True)):
        add(s, p, t, draw(st.integers(-(10**6), 10**6)), p, p % 3, p % 5)
    s.high, s.newest = len(times) + draw(st.integers(0, 3)), newest
    return s


@settings(max_examples=400, deadline=None)
@given(
    state=logs(),
    log_cap=st.sampled_from([0, 1, 2, 5, 512]),
    rewind_span=st.sampled_from([0, 1, 3, REWIND_SPAN]),
)
def test_eviction_is_the_rule_read_literally(
    state: CardState, log_cap: int, rewind_span: int
) -> None:
    expected = unpack(pack(state))
    assert expected is not None
    _evict_plain(expected, log_cap, rewind_span)
    evict(state, log_cap, rewind_span)
    assert pack(state) == pack(expected)
