"""Edges of the velocity fold's inputs, written from the rules: the epoch, amounts and
country codes beyond their fields' range, corrupt states counted, the empty state."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.features.velocity import VELOCITY_FIELDS, fold, overlay
from streamer.features.velocity_log import add
from streamer.features.velocity_state import (
    HEADER_SIZE,
    CardState,
    merchant_hash,
    pack,
    stored_high,
    txn_hash,
    unpack,
)

F = {name: i for i, name in enumerate(VELOCITY_FIELDS)}
DAY = 86_400_000
AMOUNT_LIMIT = 2**40 / 1000  # major units: amounts are kept in thousandths in 40 bits
COUNTRY_LIMIT = 0xFFFF  # country codes are u16


def _two(first_amount: float = 10.0, first_country: float = 1.0, t0: int = DAY) -> np.ndarray:
    """The second event's values after a first one with the given amount and country."""
    batch = fold(
        {}, ["c", "c"], ["t1", "t2"], [0, 1], [t0, t0 + 1_000],
        [first_amount, 10.0], ["m1", "m2"], [first_country, 1.0],
    )  # fmt: skip
    return batch.values[1]


def test_an_event_at_the_epoch_is_valid() -> None:
    values = _two(t0=0)
    assert values[F["txn_count_1h"]] == 1
    assert values[F["last_txn_time"]] == 0.0  # time 0 is a real last transaction here


@pytest.mark.parametrize(("positions", "times"), [([-1], [DAY]), ([0], [-1])])
def test_a_negative_position_or_time_is_refused_with_its_reason(
    positions: list[int], times: list[int]
) -> None:
    with pytest.raises(ValueError, match=r"^positions and event times must be >= 0$"):
        fold({}, ["c"], ["t"], positions, times, [1.0], ["m"], [1.0])


@pytest.mark.parametrize(
    ("amount", "kept"),
    [(1e15, AMOUNT_LIMIT), (-1e15, -AMOUNT_LIMIT), (123.4567, 123.457), (float("nan"), 0.0)],
)
def test_amounts_are_kept_to_a_thousandth_within_40_bits(amount: float, kept: float) -> None:
    values = _two(first_amount=amount)  # the second event's 30 days hold the first alone
    assert values[F["amount_mean_30d"]] == pytest.approx(kept, rel=1e-12)
    if kept > 0:
        assert values[F["amount_max_30d"]] == pytest.approx(kept, rel=1e-12)


@pytest.mark.parametrize(("country", "kept"), [(70_000.0, COUNTRY_LIMIT), (-5.0, 0), (49.0, 49)])
def test_country_codes_are_kept_within_16_bits(country: float, kept: int) -> None:
    assert _two(first_country=country)[F["last_country"]] == kept


def test_every_corrupt_state_is_counted_and_read_as_empty() -> None:
    batch = fold(
        {"a": b"\xff junk", "b": b"\x01"}, ["a", "b"], ["t1", "t2"], [0, 0], [DAY, DAY],
        [1.0, 1.0], ["m", "m"], [1.0, 1.0],
    )  # fmt: skip
    assert batch.corrupt == 2
    assert batch.values[:, F["txn_count_24h"]].tolist() == [0.0, 0.0]


def test_the_arrays_have_the_documented_types() -> None:
    batch = fold({}, ["c"], ["t"], [0], [DAY], [1], ["m"], [1])  # integer amounts and codes
    assert (batch.values.dtype, batch.outcomes.dtype) == (np.float64, np.int8)
    card = np.zeros((1, 11), dtype=np.int64)  # overlay takes any card matrix
    out = overlay(card, batch.values, np.full(11, 7.0))
    assert out.dtype == np.float64
    assert out[0, 4] == 7.0  # amount_mean_30d of an empty window: the default


def test_the_empty_state_is_a_header_and_reads_back() -> None:
    blob = pack(CardState())
    assert len(blob) == HEADER_SIZE
    assert unpack(blob) is not None
    assert stored_high(blob) is not None


def _lying_state(time_ms: int, amount_milli: int) -> bytes:
    """A stored state whose one entry no fold could have written (bytes changed in Redis)."""
    state = CardState()
    add(state, 1, time_ms, amount_milli, txn_hash("old"), merchant_hash("m"), 276)
    return pack(state)


@pytest.mark.parametrize(
    ("time_ms", "amount_milli", "day", "sq_hi"),
    [
        (-5, 1_000, 0, 0),  # before the epoch: its tile is day 0, the first there is
        (DAY, -(2**63), 1, 0xFFFF_FFFF),  # its square's high part saturates at 32 bits
    ],
)
def test_an_entry_no_fold_could_write_moves_into_its_tile_without_a_raise(
    time_ms: int, amount_milli: int, day: int, sq_hi: int
) -> None:
    """Bytes from Redis never make a fold raise: an entry with a time before the epoch or
    an amount past 40 bits still moves into a tile, saturated as the tile's fields are."""
    blob = _lying_state(time_ms, amount_milli)

    folded = fold({"c": blob}, ["c"], ["new"], [10], [3 * DAY], [1.0], ["m"], [276.0],
                  rewind_span=0)  # fmt: skip

    state = unpack(folded.updates["c"])
    assert state is not None
    assert (list(state.days), list(state.sq_hi)) == ([day], [sq_hi])
    assert list(state.times) == [3 * DAY]
