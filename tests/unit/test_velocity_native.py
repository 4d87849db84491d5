"""The C fold (``features/_fold.c``) gives what the Python fold gives, whatever it is given.

``velocity.fold`` hands a card with a stored state to the C shortcut first; the shortcut
does the cards whose events are all NEW and move nothing out of a tile-free log, and gives
every other card back to the Python fold. So a fold with the shortcut and one without it
must agree on every value (bit for bit), outcome, state byte and position: on stored
states made by earlier batches, on histories where the shortcut applies and where it does
not (replays, duplicates, LATE events, evictions, tiles, caps), and on stored bytes that
were tampered with. Both sides run here, so a change to either that the other does not
share fails this test (``make mutation`` runs it against the Python definition too).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.features import velocity
from streamer.features.velocity import VelocityBatch, fold
from streamer.features.velocity_log import REWIND_SPAN
from streamer.features.velocity_state import merchant_hash, txn_hash

T0 = 1_767_225_600_000
HOUR, DAY = 3_600_000, 86_400_000
Batch = tuple[list[str], list[str], list[int], list[int], list[float], list[str], list[float]]


@pytest.fixture(autouse=True)
def _built() -> None:
    """The shortcut must be built here (CI has a compiler): a test of it never skips."""
    assert velocity._native is not None, "streamer.features._fold is not built: make setup"


def _python_fold(states: dict[str, bytes | None], batch: Batch, **limits: int) -> VelocityBatch:
    native, velocity._native = velocity._native, None
    try:
        return fold(states, *batch, **limits)
    finally:
        velocity._native = native


def _same(shortcut: VelocityBatch, python: VelocityBatch) -> None:
    assert shortcut.values.tobytes() == python.values.tobytes()  # NaN where NaN, bit for bit
    assert shortcut.outcomes.tolist() == python.outcomes.tolist()
    assert shortcut.updates == python.updates
    assert shortcut.positions == python.positions
    assert shortcut.corrupt == python.corrupt


STEPS = st.sampled_from([0, 1, 60_000, HOUR, 20 * HOUR, 26 * HOUR, 3 * DAY, 31 * DAY])


@st.composite
def batches(draw: st.DrawFn, start: int, t0: int, forward: bool) -> Batch:
    """Events of a few cards from position ``start`` on (a step of 0 repeats a position: a
    replay); times moving forward from ``t0`` by minutes to months (``forward``: the
    shortcut's common case, evictions into tiles and tiles dropped included) or anywhere
    within two months, amounts from cents to beyond their field, ids mostly new."""
    n = draw(st.integers(1, 25))
    cards = draw(st.lists(st.sampled_from("abcde"), min_size=n, max_size=n))
    steps = draw(st.lists(st.integers(1, 3) if forward else st.integers(0, 3),
                          min_size=n, max_size=n))  # fmt: skip
    positions = [start + sum(steps[: i + 1]) for i in range(n)]
    if forward:
        gaps = draw(st.lists(STEPS, min_size=n, max_size=n))
        times = [t0 + sum(gaps[: i + 1]) for i in range(n)]
    else:
        times = [T0 + t for t in draw(st.lists(st.integers(-60 * DAY, 60 * DAY), min_size=n,
                                               max_size=n))]  # fmt: skip
    repeats = draw(st.lists(st.sampled_from([None, None, None, "t1", "t2"]), min_size=n,
                            max_size=n))  # fmt: skip
    txns = [r or f"p{p}" for r, p in zip(repeats, positions, strict=True)]
    amounts = draw(
        st.lists(
            st.one_of(
                st.sampled_from([0.0, 0.001, 12.34, -5.0, 1e12, -1e12, 1e9, float("nan")]),
                st.floats(-1e7, 1e7, allow_nan=False),
            ),
            min_size=n,
            max_size=n,
        )
    )
    merchants = draw(st.lists(st.sampled_from(["m1", "m2", "m3", "é"]), min_size=n, max_size=n))
    countries = draw(st.lists(st.sampled_from([0.0, 276.0, 840.0, 70_000.0]),
                              min_size=n, max_size=n))  # fmt: skip
    return cards, txns, positions, times, amounts, merchants, countries


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Batch], dict[str, int]]:
    """A few batches in input order (mostly positions moving on, sometimes a rewind), and
    the fold's limits."""
    limits = {
        "log_cap": draw(st.sampled_from([1, 3, 8, 512])),
        "rewind_span": draw(st.sampled_from([0, 2, REWIND_SPAN])),
    }
    forward = draw(st.booleans())
    out, start, t0 = [], draw(st.sampled_from([0, 1, 2**40])), T0
    for _ in range(draw(st.integers(2, 5))):
        batch = draw(batches(start, t0, forward))
        out.append(batch)
        rewind = draw(st.sampled_from([0, 0, 0, 5]))
        start, t0 = max(max(batch[2]) + 1 - rewind, 0), max(batch[3])
    return out, limits


@settings(max_examples=300, deadline=None)
@given(histories())
def test_the_c_fold_gives_what_the_python_fold_gives(
    history: tuple[list[Batch], dict[str, int]],
) -> None:
    batches_, limits = history
    states: dict[str, bytes | None] = {}
    for batch in batches_:
        read = {card: states.get(card) for card in batch[0]}
        shortcut = fold(read, *batch, **limits)
        _same(shortcut, _python_fold(read, batch, **limits))
        states.update(shortcut.updates)


@settings(max_examples=300, deadline=None)
@given(history=histories(), data=st.data())
def test_tampered_states_fold_alike(
    history: tuple[list[Batch], dict[str, int]], data: st.DataObject
) -> None:
    """Bytes from Redis that were changed (any byte, or cut short): the shortcut takes them
    only where the Python fold reads them the same, and gives the rest back."""
    (first, *rest), limits = history
    states = dict(fold(dict.fromkeys(first[0]), *first, **limits).updates)
    for card, blob in states.items():
        raw = bytearray(blob)
        where = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[where] = data.draw(st.integers(0, 255))
        else:
            del raw[where:]
        states[card] = bytes(raw)
    batch = rest[0]
    read = {card: states.get(card) for card in batch[0]}
    _same(fold(read, *batch, **limits), _python_fold(read, batch, **limits))


def test_the_shortcut_does_a_cards_next_transaction() -> None:
    """The common case is the C fold's, not handed back: a card's second transaction."""
    first = fold({"c": None}, ["c"], ["t1"], [10], [T0], [12.5], ["m1"], [276.0])
    blob = first.updates["c"]
    assert velocity._native is not None

    done = velocity._native.fold_card(
        blob, [0], [12], [T0 + 60_000], [40_000], [txn_hash("t2")], [merchant_hash("m1")],
        [276], 512, REWIND_SPAN,
    )  # fmt: skip

    assert done is not None
    state, high, values = done
    python = _python_fold(
        {"c": blob}, (["c"], ["t2"], [11], [T0 + 60_000], [40.0], ["m1"], [276.0])
    )
    assert (state, high - 1) == (python.updates["c"], python.positions["c"])
    assert values == [(1.0, 1.0, 1.0, 1.0, 12.5, 0.0, 12.5, 276.0, T0 / 1000)]
    assert values == [tuple(python.values[0])]
