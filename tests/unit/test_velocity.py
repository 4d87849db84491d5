"""The velocity rules (``streamer.features.velocity``) as tables, then against brute force.

Each table row is a card's earlier events and one event to score; the expected values are
worked out by hand from the rules' text. The properties compare ``fold`` with the models
of ``tests/unit/velocity_model.py`` on Hypothesis-drawn histories.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.features import (
    CARD_DEFAULTS,
    CARD_INDEX,
    MAX_GAP_S,
    MERCHANT_DEFAULTS,
    EventColumns,
    assemble,
)
from streamer.features.velocity import (
    DAY_MS,
    HOUR_MS,
    REWIND_SPAN,
    VELOCITY_FIELDS,
    Outcome,
    evict,
    fold,
    overlay,
)
from streamer.features.velocity_state import (
    HIGH_OFFSET,
    VERSION,
    high_position,
    merchant_hash,
    pack,
    rebase,
    state_size,
    txn_hash,
    unpack,
)
from streamer.features.velocity_store import MemoryVelocityStore
from tests.unit.velocity_model import (
    Event,
    TiledModel,
    definition,
    fold_events,
    run_batches,
    same,
)

T0 = 1_767_225_600_000 + 12 * HOUR_MS  # 2026-01-01 12:00 UTC
F = {name: i for i, name in enumerate(VELOCITY_FIELDS)}
NAN = math.nan


def score(history: list[Event], e: Event) -> dict[str, float]:
    """The features of ``e`` after ``history`` was folded (in one earlier batch)."""
    store = run_batches(history)[2] if history else {}
    batch = fold_events([e], {e.card: store.get(e.card)})
    return dict(zip(VELOCITY_FIELDS, batch.values[0].tolist(), strict=True))


def ev(i: int, t: int, **kw: object) -> Event:
    """The i-th event of card "c" (position 10 * i, transaction "t<i>")."""
    return Event("c", f"t{i}", 10 * i, t, **kw)  # type: ignore[arg-type]


# --- windows -------------------------------------------------------------------------------

WINDOW_CASES = [
    # (what, earlier events' times relative to T0, field, expected)
    ("exactly 1 h before is out", [-HOUR_MS], "txn_count_1h", 0),
    ("1 h - 1 ms before is in", [-HOUR_MS + 1], "txn_count_1h", 1),
    ("exactly 24 h before is out", [-24 * HOUR_MS], "txn_count_24h", 0),
    ("24 h - 1 ms before is in", [-24 * HOUR_MS + 1], "txn_count_24h", 1),
    ("the same millisecond counts", [0, 0], "txn_count_1h", 2),
    ("stamped after the event: not counted", [1], "txn_count_1h", 0),
    ("stamped after the event: not in 24 h", [HOUR_MS], "txn_count_24h", 0),
    ("stamped after, same day: not in 7 d", [1], "txn_count_7d", 0),
    ("mixed", [-2 * HOUR_MS, -30 * 60_000, -1, 5], "txn_count_24h", 3),
]


@pytest.mark.parametrize(("what", "offsets", "name", "expected"), WINDOW_CASES)
def test_window_edges(what: str, offsets: list[int], name: str, expected: float) -> None:
    history = [ev(i, T0 + off) for i, off in enumerate(offsets)]
    assert score(history, ev(len(offsets), T0))[name] == expected, what


DAY0 = (T0 // DAY_MS) * DAY_MS  # midnight UTC of T0's day
DAY_CASES = [
    # (what, earlier event time, field, expected) for an event at T0
    ("start of the 7th day back counts", DAY0 - 6 * DAY_MS, "txn_count_7d", 1),
    ("last ms of the 8th day back does not", DAY0 - 6 * DAY_MS - 1, "txn_count_7d", 0),
    ("start of the 30th day back counts", DAY0 - 29 * DAY_MS, "amount_max_30d", 10.0),
    ("last ms of the 31st day back does not", DAY0 - 29 * DAY_MS - 1, "amount_max_30d", NAN),
    ("earlier today counts in 7 d", DAY0, "txn_count_7d", 1),
]


@pytest.mark.parametrize(("what", "when", "name", "expected"), DAY_CASES)
def test_day_windows_in_log_and_in_tiles(what: str, when: int, name: str, expected: float) -> None:
    """Day windows count whole UTC days, and moving an entry from the log into its day tile
    (here done by a second event 25 h after it) changes no feature."""
    assert same([score([ev(0, when)], ev(5, T0))[name]], [expected]), what
    keep, push = ev(1, when + 25 * HOUR_MS - 1), ev(1, when + 25 * HOUR_MS)
    if push.t > T0 - HOUR_MS:
        return  # the event would be late: no exactness promised
    tiled = unpack(run_batches([ev(0, when), push])[2]["c"])
    assert tiled is not None
    assert tiled.times.tolist() == [push.t]
    assert tiled.counts[0] == 1
    in_log, in_tile = score([ev(0, when), keep], ev(5, T0)), score([ev(0, when), push], ev(5, T0))
    assert same(list(in_log.values())[:-1], list(in_tile.values())[:-1]), what
    assert (in_log["last_txn_time"], in_tile["last_txn_time"]) == (keep.t / 1000, push.t / 1000)


def test_empty_history() -> None:
    values = score([], ev(0, T0))
    assert [values[k] for k in ("txn_count_1h", "txn_count_24h", "txn_count_7d")] == [0, 0, 0]
    assert values["distinct_merchants_24h"] == 0
    assert all(math.isnan(values[k]) for k in ("amount_mean_30d", "amount_std_30d"))
    assert math.isnan(values["amount_max_30d"])
    assert (values["last_country"], values["last_txn_time"]) == (0.0, 0.0)


def test_amount_statistics_and_distinct_merchants() -> None:
    history = [
        ev(0, T0 - 3 * HOUR_MS, amount=10.0, merchant="a"),
        ev(1, T0 - 2 * HOUR_MS, amount=20.5, merchant="b"),
        ev(2, T0 - HOUR_MS // 2, amount=30.25, merchant="a"),
    ]
    values = score(history, ev(3, T0, amount=999.0))  # the event's own amount never counts
    amounts = [10.0, 20.5, 30.25]
    assert values["amount_mean_30d"] == pytest.approx(np.mean(amounts), abs=1e-12)
    assert values["amount_std_30d"] == pytest.approx(np.std(amounts), abs=1e-12)
    assert values["amount_max_30d"] == 30.25
    assert values["distinct_merchants_24h"] == 2


def test_last_transaction_is_the_latest_time_then_the_latest_position() -> None:
    history = [
        ev(0, T0 - HOUR_MS, country=7),
        ev(1, T0 - 2 * HOUR_MS, country=8),  # later in the partition, earlier in time
        ev(2, T0 + HOUR_MS, country=9),  # stamped after the event: not "last"
    ]
    values = score(history, ev(3, T0))
    assert (values["last_country"], values["last_txn_time"]) == (7.0, (T0 - HOUR_MS) / 1000)
    tie = [ev(0, T0 - 5, country=3), ev(1, T0 - 5, country=4)]
    assert score(tie, ev(2, T0))["last_country"] == 4.0


def test_last_transaction_survives_in_tiles() -> None:
    """A card used every three days still knows its last transaction (not 'unknown')."""
    history = [ev(0, T0 - 6 * DAY_MS, country=5), ev(1, T0 - 3 * DAY_MS, country=6)]
    state = unpack(run_batches(history)[2]["c"])
    assert state is not None
    assert state.times.tolist() == [T0 - 3 * DAY_MS]
    values = score(history[:1], ev(1, T0 - 3 * DAY_MS))
    assert values["last_txn_time"] == (T0 - 6 * DAY_MS) / 1000  # read from the tiled entry
    assert score(history, ev(2, T0))["last_country"] == 6.0


# --- outcomes ------------------------------------------------------------------------------


def test_events_of_one_card_in_a_batch_see_each_other_in_order() -> None:
    events = [ev(i, T0 + i * 1000, merchant=f"m{i}") for i in range(4)]
    batch = fold_events(events)
    assert batch.values[:, F["txn_count_1h"]].tolist() == [0, 1, 2, 3]
    assert batch.values[:, F["distinct_merchants_24h"]].tolist() == [0, 1, 2, 3]
    assert batch.outcomes.tolist() == [Outcome.NEW] * 4
    assert batch.positions == {"c": 30}


def test_duplicate_adds_no_entry_and_its_replay_is_a_replay() -> None:
    first = fold_events([ev(0, T0), ev(1, T0 + 1)])
    dup = Event("c", "t0", 20, T0 + 2)
    batch = fold_events([dup], first.updates)
    assert batch.outcomes.tolist() == [Outcome.DUPLICATE]
    assert batch.positions == {"c": 20}
    assert batch.values[0, F["txn_count_1h"]] == 2
    before, after = unpack(first.updates["c"]), unpack(batch.updates["c"])
    assert before is not None
    assert after is not None
    assert after.times.tolist() == before.times.tolist()  # no entry added
    again = fold_events([dup], batch.updates)
    assert again.outcomes.tolist() == [Outcome.REPLAY]
    assert again.values.tobytes() == batch.values.tobytes()
    assert again.updates == {}


def test_replay_gets_the_first_features_and_changes_nothing() -> None:
    events = [ev(i, T0 + i * 60_000, amount=1.0 + i) for i in range(6)]
    first = fold_events(events)
    replay = fold_events(events[2:], first.updates)  # a rewind to position 20
    assert replay.outcomes.tolist() == [Outcome.REPLAY] * 4
    assert replay.updates == {}
    assert replay.values.tobytes() == first.values[2:].tobytes()


def test_late_event_is_added_and_flagged() -> None:
    history = [ev(0, T0)]
    batch = fold_events([ev(1, T0 - HOUR_MS - 1)], run_batches(history)[2])
    assert batch.outcomes.tolist() == [Outcome.LATE]
    on_time = fold_events([ev(1, T0 - HOUR_MS)], run_batches(history)[2])
    assert on_time.outcomes.tolist() == [Outcome.NEW]
    assert score([ev(0, T0), ev(1, T0 - 30 * HOUR_MS)], ev(2, T0))["txn_count_7d"] == 2


def test_duplicate_is_recognised_until_its_original_leaves_the_log() -> None:
    base = [ev(0, T0), ev(1, T0 + 25 * HOUR_MS - 1)]
    store = run_batches(base)[2]
    assert fold_events([Event("c", "t0", 50, T0)], store).outcomes.tolist() == [Outcome.DUPLICATE]
    store = run_batches([ev(0, T0), ev(1, T0 + 25 * HOUR_MS)])[2]  # t0 now in its tile
    assert fold_events([Event("c", "t0", 50, T0)], store).outcomes.tolist() == [Outcome.LATE]


def test_eviction_at_the_25_hour_boundary() -> None:
    kept = unpack(run_batches([ev(0, T0), ev(1, T0 + 25 * HOUR_MS - 1)])[2]["c"])
    gone = unpack(run_batches([ev(0, T0), ev(1, T0 + 25 * HOUR_MS)])[2]["c"])
    assert kept is not None
    assert gone is not None
    assert (len(kept.times), len(kept.days)) == (2, 0)
    assert (len(gone.times), gone.days.tolist(), gone.counts.tolist()) == (1, [T0 // DAY_MS], [1])


def test_eviction_is_front_only() -> None:
    """A late entry behind a recent one stays in the log until the recent one leaves."""
    events = [ev(0, T0), ev(1, T0 - 40 * HOUR_MS), ev(2, T0 + HOUR_MS)]
    state = unpack(run_batches(events)[2]["c"])
    assert state is not None
    assert sorted(state.positions.tolist()) == [1, 11, 21]  # kept as position + 1


def test_log_cap() -> None:
    events = [ev(i, T0 + i) for i in range(12)]
    batch = fold_events(events, log_cap=5)
    state = unpack(batch.updates["c"])
    assert state is not None
    assert state.positions.tolist() == [71, 81, 91, 101, 111]  # kept as position + 1
    assert state.counts.tolist() == [7]  # the rest went to today's tile
    assert batch.values[-1, F["txn_count_7d"]] == 11  # the tiles still count by day
    assert batch.values[-1, F["txn_count_1h"]] == 5  # exact windows saturate at the cap


def test_tiles_older_than_30_days_are_dropped() -> None:
    events = [ev(0, T0), ev(1, T0 + 31 * DAY_MS)]
    state = unpack(run_batches(events)[2]["c"])
    assert state is not None
    assert state.days.tolist() == []
    assert state.tiled_last == T0  # the last transaction is still known


def test_large_amounts_are_exact() -> None:
    big = 9_999_999.999  # a sum of squares past 2**64 thousandths
    history = [ev(i, T0 - (i + 2) * DAY_MS, amount=big) for i in range(3)]
    values = score(history, ev(9, T0))
    assert (values["amount_mean_30d"], values["amount_std_30d"]) == (big, 0.0)
    assert values["amount_max_30d"] == big


# --- bytes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x00", bytes([VERSION]), bytes([VERSION + 1]) + bytes(40), b"garbage" * 20],
)
def test_corrupt_state_reads_as_empty_and_is_counted(blob: bytes) -> None:
    batch = fold_events([ev(0, T0)], {"c": blob})
    assert batch.corrupt == 1
    assert batch.outcomes.tolist() == [Outcome.NEW]
    assert batch.values[0, F["txn_count_24h"]] == 0


def test_truncated_state_reads_as_empty() -> None:
    blob = fold_events([ev(0, T0), ev(1, T0 + 1)]).updates["c"]
    for cut in (len(blob) - 1, 31, 20):
        assert unpack(blob[:cut]) is None
        assert high_position(blob[:cut]) == -1
    assert fold_events([ev(2, T0 + 2)], {"c": blob + b"x"}).corrupt == 1


def test_encoding_is_canonical_with_the_position_at_a_fixed_offset() -> None:
    events = [ev(i, T0 + i * 7 * HOUR_MS, amount=i + 0.5) for i in range(9)]
    blob = run_batches(events, [2, 3])[2]["c"]
    assert blob == run_batches(events)[2]["c"]
    state = unpack(blob)
    assert state is not None
    assert pack(state) == blob
    assert int.from_bytes(blob[HIGH_OFFSET : HIGH_OFFSET + 8], "little") == 80 + 1
    assert high_position(blob) == 80
    assert len(blob) == state_size(len(state.times), len(state.days))


def test_hashes_are_stable_across_processes() -> None:
    """Pinned values: a change of hash would make every stored state's dedup miss."""
    assert txn_hash("tx-1") == 0x6B3AC10605B04A7A  # blake2b, 8 bytes, little-endian
    assert merchant_hash("merchant-1") == 0x3C4C2A6B  # CRC-32


def test_state_size_at_20_transactions_a_day() -> None:
    step = DAY_MS // 20
    events = [ev(i, T0 + i * step) for i in range(30 * 20)]
    blob = run_batches(events, [100] * 5)[2]["c"]
    assert len(blob) <= 2048, len(blob)


def test_negative_positions_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        fold({}, ["c"], ["t"], [-1], [T0], [1.0], ["m"], [1.0])


# --- against brute force -------------------------------------------------------------------

CARDS = ["a", "b", "c"]
GAPS = st.one_of(
    st.just(0),  # bursts: the same millisecond
    st.integers(-HOUR_MS, 0),  # out of order, within the lateness allowance
    st.integers(1, 2 * HOUR_MS),
    st.sampled_from([HOUR_MS, 24 * HOUR_MS, 24 * HOUR_MS - 1, 24 * HOUR_MS + 1]),
    st.integers(DAY_MS, 9 * DAY_MS),  # quiet days: entries move into tiles
)


@st.composite
def histories(draw: st.DrawFn, late: bool = False) -> list[Event]:
    """Events of a few cards in input order. Without ``late``, no event is more than the
    lateness allowance behind its card's newest time; duplicates repeat a recent
    transaction id (within 24 h) with a new time."""
    n = draw(st.integers(1, 40))
    newest: dict[str, int] = {}
    recent: dict[str, list[Event]] = {}
    events: list[Event] = []
    pos = 0
    for i in range(n):
        card = draw(st.sampled_from(CARDS))
        pos += draw(st.integers(1, 3))
        base = newest.get(card, T0 + draw(st.integers(0, DAY_MS)))
        gap = draw(GAPS if not late else st.one_of(GAPS, st.integers(-40 * DAY_MS, -HOUR_MS)))
        t = max(base + gap, 0)
        txn, fresh = f"{card}{i}", True
        pool = [x for x in recent.get(card, []) if x.t > newest[card] - 24 * HOUR_MS]
        if pool and draw(st.integers(0, 9)) == 0:
            txn, fresh = draw(st.sampled_from(pool)).txn, False
        amount = draw(st.sampled_from([0.01, 1.0, 12.34, 99.999, 250.0, 10_000.0, 7_654_321.5]))
        merchant = draw(st.sampled_from(["m1", "m2", "m3", "m4"]))
        e = Event(card, txn, pos, t, amount, merchant, draw(st.integers(0, 858)))
        events.append(e)
        newest[card] = max(newest.get(card, t), t)
        if fresh:  # a repeat is recognised while its first occurrence is in the log
            recent.setdefault(card, []).append(e)
    return events


@st.composite
def splits(draw: st.DrawFn, n: int) -> list[int]:
    return draw(st.lists(st.integers(1, max(n, 1)), max_size=6))


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(data=st.data())
def test_fold_is_the_definition_for_histories_without_late_events(data: st.DataObject) -> None:
    events = data.draw(histories())
    values, outcomes, _ = run_batches(events, data.draw(splits(len(events))))
    rows, expected = definition(events)
    assert outcomes == expected
    for e, got, want in zip(events, values.tolist(), rows, strict=True):
        assert same(got, want), (e, dict(zip(VELOCITY_FIELDS, got, strict=True)), want)


@PROPERTY
@given(data=st.data())
def test_fold_follows_the_tile_rules_for_any_history(data: st.DataObject) -> None:
    events = data.draw(histories(late=True))
    cap = data.draw(st.sampled_from([3, 8, 512]))
    span = data.draw(st.sampled_from([0, 5, REWIND_SPAN]))
    model = TiledModel(log_cap=cap, rewind_span=span)
    expected = [model.process(e) for e in events]
    store: dict[str, bytes] = {}
    start = 0
    for size in [*data.draw(splits(len(events))), len(events)]:
        chunk = events[start : start + size]
        start += len(chunk)
        if not chunk:
            continue
        batch = fold_events(
            chunk, {e.card: store.get(e.card) for e in chunk}, log_cap=cap, rewind_span=span
        )
        store.update(batch.updates)
        for k, e in enumerate(chunk):
            row, outcome = expected[events.index(e)]
            assert batch.outcomes[k] == outcome, e
            assert same(batch.values[k].tolist(), row), (e, batch.values[k].tolist(), row)


def test_a_saturated_tile_never_makes_a_fold_raise() -> None:
    """A day tile counts up to 65,535 transactions and its sums stop at their limits."""
    state = unpack(fold_events([ev(0, T0, amount=9_999_999.999)]).updates["c"])
    assert state is not None
    day = T0 // DAY_MS
    for column, value in zip(
        state.tile_columns(), (day, 0xFFFF, 2**63 - 1, 1, 2**64 - 1, 2**32 - 1), strict=True
    ):
        column.append(value)
    state.newest = T0 + 25 * HOUR_MS
    evict(state, 512, 0)  # moves the entry into the full tile
    assert (state.counts.tolist(), state.sums.tolist()) == ([0xFFFF], [2**63 - 1])
    blob = pack(state)
    batch = fold_events([ev(1, T0 + 25 * HOUR_MS)], {"c": blob})
    assert batch.corrupt == 0
    assert batch.values[0, F["txn_count_7d"]] == 0xFFFF


def test_a_rebased_history_comes_before_every_live_position() -> None:
    """A state seeded from a plain file (positions are its indexes) and rebased: live
    events at any offset are new to it and see all of it; it never replaces a live state."""
    history = [Event("c", f"h{i}", 1000 + i, T0 + i * HOUR_MS, merchant=f"m{i}") for i in range(5)]
    seeded = rebase(run_batches(history)[2]["c"])
    assert seeded is not None
    assert high_position(seeded) == -1
    live = fold_events([ev(0, T0 + 5 * HOUR_MS), ev(1, T0 + 5 * HOUR_MS + 1)], {"c": seeded})
    assert live.outcomes.tolist() == [Outcome.NEW, Outcome.NEW]
    assert live.values[:, F["txn_count_24h"]].tolist() == [5, 6]
    assert fold_events([Event("c", "h4", 3, T0 + 6 * HOUR_MS)], {"c": seeded}).outcomes[0] == (
        Outcome.DUPLICATE
    )
    store = MemoryVelocityStore()
    assert store.write(live.updates, live.positions).written == 1
    assert store.write({"c": seeded}, {"c": -1}).stale == 1
    assert rebase(b"junk") is None


def test_overlay_feeds_the_model_inputs_through_assemble() -> None:
    """The velocity values replace the snapshot's velocity columns; assemble turns them
    into model inputs unchanged (one definition online and offline)."""
    events = [
        ev(i, T0 + i * 4000, amount=5.0 * (i + 1), country=133 if i < 2 else 99) for i in range(3)
    ]
    batch = fold_events(events)
    snapshot = np.broadcast_to(CARD_DEFAULTS, (3, len(CARD_DEFAULTS)))  # read-only, as degraded
    card = overlay(snapshot, batch.values, CARD_DEFAULTS)
    assert card[0, CARD_INDEX["amount_mean_30d"]] == CARD_DEFAULTS[CARD_INDEX["amount_mean_30d"]]
    assert card[0, CARD_INDEX["card_age_days"]] == CARD_DEFAULTS[CARD_INDEX["card_age_days"]]
    n = len(events)
    columns = EventColumns(
        amount=np.array([e.amount for e in events]),
        event_time_ms=np.array([e.t for e in events], dtype=np.int64),
        mcc=np.zeros(n, dtype=np.int32),
        merchant_country=np.array([float(e.country) for e in events]),
        channel=np.zeros(n, dtype=np.int8),
        entry_mode=np.zeros(n, dtype=np.int8),
        card_present=np.zeros(n, dtype=np.bool_),
        three_ds=np.zeros(n, dtype=np.int8),
        has_device=np.zeros(n, dtype=np.bool_),
        is_recurring=np.zeros(n, dtype=np.bool_),
    )
    names = ["txn_count_1h", "seconds_since_last_txn", "country_changed", "amount_vs_max"]
    merchant = np.broadcast_to(MERCHANT_DEFAULTS, (n, len(MERCHANT_DEFAULTS)))
    x = assemble(columns, card, merchant, names)
    assert x[:, 0].tolist() == [0, 1, 2]
    assert x[:, 1].tolist() == [MAX_GAP_S, 4.0, 4.0]
    assert x[:, 2].tolist() == [0, 0, 1]  # 99 after 133
    assert x[2, 3] == pytest.approx(15.0 / 10.0)


def test_a_rewind_over_days_of_event_time_replays_exactly_within_the_rewind_span() -> None:
    """A backlog of old events: the stream runs ahead of its commits by up to the outputs
    in flight, so a kill -9 rewinds across days of event time. Entries stay exact in the
    log until they are also REWIND_SPAN positions behind, so every replay is exact."""
    events = [ev(i, T0 + i * 2 * HOUR_MS) for i in range(60)]  # 5 days
    first = fold_events(events, rewind_span=REWIND_SPAN)
    replay = fold_events(events[10:], first.updates, rewind_span=REWIND_SPAN)
    assert replay.values.tolist() == first.values[10:].tolist()
    assert replay.outcomes.tolist() == [Outcome.REPLAY] * 50
    assert first.values[20, F["txn_count_24h"]] == 11  # (t - 24 h, t): 2 h apart, exact
    shallow = fold_events(events, rewind_span=0)  # eviction by event time alone
    lost = fold_events(events[10:], shallow.updates, rewind_span=0)
    assert lost.values.tolist() != first.values[10:].tolist()  # what the span prevents
