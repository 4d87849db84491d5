"""Hand-built histories that reach every corner of the day tiles, checked against the
brute-force model of the tile rules (``velocity_model.TiledModel``): amounts whose squares
pass 2**64, log and tiles both holding the 30-day maximum, ties on the last transaction's
time, and tiles at the 7-day, 30-day and drop boundaries. Fast enough for every mutant."""

from __future__ import annotations

import math

import pytest

from streamer.features.velocity import DAY_MS, HOUR_MS
from streamer.features.velocity_state import unpack
from tests.unit.velocity_model import Event, TiledModel, fold_events

T0 = 1_767_225_600_000 + 12 * HOUR_MS  # 2026-01-01 12:00 UTC


def _history(name: str) -> list[Event]:
    def e(i: int, t: int, amount: float = 10.0, country: int = 1, merchant: str = "m1") -> Event:
        return Event("c", f"{name}-{i}", 10 * i, t, amount, merchant, country)

    if name == "huge":  # squares past 2**64 in a tile, with the log's smaller amounts
        # two squares just under 2**64 thousandths squared: their low words carry
        times = [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 2 * HOUR_MS, T0 + 30 * HOUR_MS, T0 + 31 * HOUR_MS]
        amounts = [5_000_000.0, 4_321_000.123, 4_294_000.0, 4_294_000.0, 7.5, 12.0, 9.0]
        return [e(i, t, a) for i, (t, a) in enumerate(zip(times, amounts, strict=True))]
    if name == "maxima":  # the 30-day maximum in a tile, then in the log
        return [e(0, T0, 900.0), e(1, T0 + 26 * HOUR_MS, 20.0), e(2, T0 + 27 * HOUR_MS, 5000.0),
                e(3, T0 + 28 * HOUR_MS, 1.0)]  # fmt: skip
    if name == "ties":  # two transactions at one time, tiled, then one at the same time logged
        later = T0 + 26 * HOUR_MS
        return [e(0, T0, country=3), e(1, T0, country=4), e(2, later, country=5),
                e(3, later, country=6), e(4, later + 1, country=7)]  # fmt: skip
    if name == "midnight":  # the tile-drop boundary, with the newest event just after midnight
        midnight = T0 - 12 * HOUR_MS
        return [e(0, midnight + DAY_MS + 12 * HOUR_MS), e(1, midnight + 2 * DAY_MS),
                e(2, midnight + 5 * DAY_MS), e(3, midnight + 31 * DAY_MS + 1_800_000)]  # fmt: skip
    days = [0, 1, 6, 7, 8, 23, 24, 29, 30, 31, 32]  # "bounds": tiles at every window edge
    out = [e(i, T0 + d * DAY_MS, 10.0 + i) for i, d in enumerate(days)]
    return [*out, e(len(days), T0 + 32 * DAY_MS + 1, 99.0)]


def _same(a: list[float], b: list[float]) -> bool:
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", ["huge", "maxima", "ties", "bounds", "midnight"])
@pytest.mark.parametrize("split", [1, 2, 100])
def test_the_fold_is_the_tile_model_at_every_corner(name: str, split: int) -> None:
    events = _history(name)
    model = TiledModel(rewind_span=0)
    expected = [model.process(x) for x in events]
    store: dict[str, bytes] = {}
    for start in range(0, len(events), split):
        chunk = events[start : start + split]
        batch = fold_events(chunk, {"c": store.get("c")})
        store.update(batch.updates)
        for k, x in enumerate(chunk):
            row, outcome = expected[events.index(x)]
            assert batch.outcomes[k] == outcome, x
            assert _same(batch.values[k].tolist(), row), (x, batch.values[k].tolist(), row)
    state = unpack(store["c"])
    assert state is not None
    assert sorted(set(state.days)) == sorted({x.t // DAY_MS for x in model.cards["c"].tiled})
    again = fold_events(events[1:], store)  # every one replayed: as the first time
    for k, x in enumerate(events[1:]):
        row = expected[events.index(x)][0]
        assert _same(again.values[k].tolist(), row) or x.t < events[-1].t - HOUR_MS, x


def test_the_last_transaction_is_the_logs_on_a_tie_with_the_tiles_and_a_tiled_one_at_t() -> None:
    """``last_*`` read off a state directly: the log's entry wins a tie with the tiled last
    transaction (its position is higher), and a tiled transaction stamped at t itself is
    earlier (``t' <= t``)."""
    from array import array

    from streamer.features.velocity_state import CardState
    from streamer.features.velocity_windows import features

    tied = CardState(high=3, newest=T0, tiled_last=T0, tiled_last_country=9)
    tied.times, tied.countries = array("q", [T0]), array("H", [5])
    tied.positions, tied.amounts = array("Q", [2]), array("q", [1000])
    tied.txns, tied.merchants = array("Q", [1]), array("I", [1])
    assert features(tied, T0)[7:] == (5.0, T0 / 1000)
    tiled_only = CardState(high=3, newest=T0, tiled_last=T0, tiled_last_country=9)
    assert features(tiled_only, T0)[7:] == (9.0, T0 / 1000)
    assert features(tiled_only, T0 - 1)[7:] == (0.0, 0.0)
