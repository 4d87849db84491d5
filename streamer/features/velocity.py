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
first) into their day tile while the front entry is both at least ``HORIZON_MS`` (25 h)
older than ``newest`` and ``REWIND_SPAN`` positions behind ``high``, or while the log
holds more than ``LOG_CAP`` entries; tiles of days before the 30-day window of
``newest - LATENESS_MS`` are dropped. Tiles count by day, as the 7- and
30-day windows do, and the latest tiled entry is kept for ``last_*``, so moving an entry
into a tile changes no feature of an event that is not LATE.

Guarantees
----------
- Convergence: a card's state depends only on the card's events up to ``high``, in
  order, whatever the batches, rewinds, replays, restarts and concurrent instances (an
  event's effect depends only on the state and the event; replays change nothing). A
  compare-and-set on ``high`` keeps a stale instance from writing an older state.
- Exactness: an event that is not LATE gets exactly the definition above, and so does
  any replay of it while the card's log stayed under ``LOG_CAP`` and no LATE event of the
  card came after it, provided either ``newest`` is at most ``LATENESS_MS`` past its time,
  or every entry of its 24-hour window is less than ``REWIND_SPAN`` positions behind
  ``high`` (entries at or after a rewind point always are, for a rewind shorter than the
  span; the entries before it in the window are too unless the card's event time ran more
  than an hour ahead within the span). A LATE event's 1 h / 24 h windows and last
  transaction may miss entries already in tiles, and its day windows may count tiled
  entries stamped after it.
- Deduplication: a repeated transaction id is recognised while its first occurrence is
  in the log (at least 25 h of event time and ``REWIND_SPAN`` positions, up to
  ``LOG_CAP`` entries); an older repeat counts as a new transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.features.layout import CARD_INDEX
from streamer.features.velocity_log import (
    HORIZON_MS,
    LATENESS_MS,
    LOG_CAP,
    REWIND_SPAN,
    TILE_DAYS,
    add,
    evict,
)
from streamer.features.velocity_state import (
    DAY_MS,
    HOUR_MS,
    NO_TIME,
    CardState,
    first_states,
    merchant_hash,
    pack,
    txn_hash,
    unpack,
)
from streamer.features.velocity_windows import features, view

try:  # the common case in C (``_fold.c``): the same results, held to them by the tests
    from streamer.features import _fold as _native  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - built wherever there is a C compiler
    _native = None

__all__ = [
    "DAY_MS",
    "HORIZON_MS",
    "HOUR_MS",
    "LATENESS_MS",
    "LOG_CAP",
    "TILE_DAYS",
    "VELOCITY_CARD_COLUMNS",
    "VELOCITY_FIELDS",
    "Outcome",
    "VelocityBatch",
    "evict",
    "features",
    "fold",
    "overlay",
]

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
VELOCITY_CARD_COLUMNS: tuple[int, ...] = tuple(CARD_INDEX[name] for name in VELOCITY_FIELDS)
"""Where each of ``VELOCITY_FIELDS`` sits in a ``CARD_FIELDS`` row."""

_AMOUNT_LIMIT = 1 << 40  # thousandths of a major unit: 1.1e9 major units, beyond any payment
_COUNTRY_LIMIT = 0xFFFF


_NO_HISTORY = np.array(features(CardState(), 0), dtype=np.float64)
"""The values of an event whose card has no earlier event (the same at every time)."""


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
    rewind_span: int = REWIND_SPAN,
) -> VelocityBatch:
    """Each event's velocity values, in batch order, and the cards' new states.

    ``states`` maps each card id of the batch to its stored bytes (None when absent; a
    card missing from the mapping is read as absent). Amounts are in major units;
    countries are ``country_code`` numbers; positions must be >= 0 and, within a card,
    follow the partition's order. Amounts are kept to a thousandth of a major unit.
    """
    n = len(card_ids)
    pos, times, amts, ctry = _integers(positions, event_times_ms, amounts, countries)
    columns = (pos, times, amts, transaction_ids, merchant_ids, ctry)
    groups = _by_card(card_ids)
    rows: dict[int, tuple[float, ...]] = {}  # the values of every event but first transactions
    outcomes = [0] * n  # Outcome.NEW
    updates: dict[str, bytes] = {}
    highs: dict[str, int] = {}
    first: list[int] = []  # events that are their card's first transaction
    corrupt = 0
    for card, idx in groups.items():
        blob = states.get(card)
        if blob is None and len(idx) == 1 and log_cap > 0:  # NEW, with nothing to evict:
            first.append(idx[0])  # its one entry is the card's newest, under the cap
            continue
        if type(blob) is bytes and _native is not None:
            done = _shortcut(blob, idx, columns, log_cap, rewind_span)
            if done is not None:
                updates[card], high, found = done
                highs[card] = high - 1
                rows.update(zip(idx, found, strict=True))
                continue
        state = unpack(blob)
        if state is None:
            corrupt += 1
            state = CardState()
        if _fold_card(state, idx, columns, rows, outcomes, log_cap, rewind_span):
            updates[card] = pack(state)
            highs[card] = state.high - 1
    if first:
        _first_transactions(first, card_ids, columns, updates, highs)
    values = np.tile(_NO_HISTORY, (n, 1))
    if rows:
        values[list(rows)] = list(rows.values())
    return VelocityBatch(values, np.array(outcomes, dtype=np.int8), updates, highs, corrupt)


def _fold_card(
    state: CardState,
    idx: list[int],
    columns: tuple[Sequence[Any], ...],
    rows: dict[int, tuple[float, ...]],
    outcomes: list[int],
    log_cap: int,
    rewind_span: int,
) -> bool:
    """One card's events (``idx``, in batch order) folded into its ``state``, their values
    into ``rows`` and outcomes into ``outcomes``; True when the state changed. ``columns``:
    positions (+ 1), times, amounts, transaction ids, merchant ids, countries."""
    pos, times, amts, transaction_ids, merchant_ids, ctry = columns
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
        evict(state, log_cap, rewind_span)
        changed = True
    return changed


def _shortcut(
    blob: bytes, idx: list[int], columns: tuple[Sequence[Any], ...], log_cap: int, span: int
) -> tuple[bytes, int, list[tuple[float, ...]]] | None:
    """``_fold_card`` in C for a card whose events are all NEW (no replay, duplicate or
    LATE event): its new state's bytes, high and values; None for any other card, and for
    values beyond the range where C's arithmetic is Python's (``_fold.c``)."""
    pos, times, amts, transaction_ids, merchant_ids, ctry = columns
    txns = [txn_hash(transaction_ids[i]) for i in idx]
    merchants = [merchant_hash(merchant_ids[i]) for i in idx]
    done: tuple[bytes, int, list[tuple[float, ...]]] | None = _native.fold_card(
        blob, idx, pos, times, amts, txns, merchants, ctry, log_cap, span
    )
    return done


def _by_card(card_ids: Sequence[str]) -> dict[str, list[int]]:
    """Each card's events, by their index in the batch, in batch order."""
    groups: dict[str, list[int]] = {}
    for i, card in enumerate(card_ids):
        groups.setdefault(card, []).append(i)
    return groups


def _first_transactions(
    first: list[int],
    card_ids: Sequence[str],
    columns: tuple[Sequence[Any], ...],
    updates: dict[str, bytes],
    highs: dict[str, int],
) -> None:
    """The new states of the cards whose one event in the batch is their first
    transaction (``first``: those events' indices), into ``updates`` and ``highs``.
    ``columns``: positions (+ 1), times, amounts, transaction ids, merchant ids, countries."""

    def at(column: Sequence[Any]) -> list[Any]:
        return list(map(column.__getitem__, first))

    firsts = first_states(*map(at, columns))
    updates.update(zip(map(card_ids.__getitem__, first), firsts, strict=True))
    pos = columns[0]
    highs.update((card_ids[i], pos[i] - 1) for i in first)


def _integers(
    positions: Any, event_times_ms: Any, amounts: Any, countries: Any
) -> tuple[list[int], list[int], list[int], list[int]]:
    """The columns as the state keeps them: positions + 1, times, amounts in thousandths
    (clipped), country codes (clipped); ``ValueError`` for a negative position or time."""
    pos = (np.asarray(positions, dtype=np.int64) + 1).tolist()  # the state keeps them + 1
    times = np.asarray(event_times_ms, dtype=np.int64).tolist()
    if pos and (min(pos) < 1 or min(times) < 0):
        raise ValueError("positions and event times must be >= 0")
    money = np.asarray(amounts, dtype=np.float64)
    milli = np.clip(np.nan_to_num(np.rint(money * 1000.0)), -_AMOUNT_LIMIT, _AMOUNT_LIMIT)
    codes = np.nan_to_num(np.asarray(countries, dtype=np.float64))
    ctry = np.clip(codes, 0, _COUNTRY_LIMIT).astype(np.int64).tolist()
    return pos, times, milli.astype(np.int64).tolist(), ctry


def overlay(
    card: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    defaults: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """``card`` (``CARD_FIELDS`` rows aligned with the batch, as ``unpack_rows`` gives
    them) with its velocity columns replaced by ``values`` (``VelocityBatch.values``): the
    streamed state wins over the loaded snapshot, whose static fields stay. A NaN value
    (amount statistics over an empty 30-day window) takes its column of ``defaults`` (the
    model's card defaults), as ``unpack_rows`` does for a NaN in a snapshot. Returns a new
    array: ``card`` may be read-only (a broadcast of defaults when Redis is down)."""
    columns = list(VELOCITY_CARD_COLUMNS)
    out = np.array(card, dtype=np.float64)
    out[:, columns] = np.where(np.isnan(values), defaults[columns], values)
    return out
