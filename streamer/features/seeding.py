"""Seeding the velocity state from history: a new deployment starts warm.

The history is folded in the stream's order (``backfill.history.ordered_events``) by the
same definition the stream uses (``enrichment.fold_events``), in memory, and each card's
final state is written with the stream's compare-and-set: a card whose state in Redis is
already at or past the history's last position keeps it, so seeding a running system
never moves a card backwards. A plain file's row numbers are not the partition's offsets:
its states are rebased before every position (``velocity_state.rebase``), so every live
event is new to them and a live state in Redis always wins over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis

from streamer.backfill.history import from_dump, ordered_events
from streamer.features.engineering import event_columns
from streamer.features.enrichment import fold_events
from streamer.features.redis_client import ErrorKind
from streamer.features.velocity_state import high_position, rebase
from streamer.features.velocity_store import MemoryVelocityStore, write_states

_CHUNK = 5000


@dataclass(frozen=True)
class Seeded:
    """What seeding did: events folded, cards, and the write's outcome."""

    events: int
    cards: int
    written: int
    stale: int
    failed: int
    error: ErrorKind | None = None


def seed_velocity(client: redis.Redis, history: Path, *, prefix: str, ttl_s: int) -> Seeded:
    """Fold ``history`` and write every card's state (pipelined, ``_CHUNK`` cards a trip)."""
    store = MemoryVelocityStore()
    events = list(ordered_events(history))
    for start in range(0, len(events), _CHUNK):
        chunk = events[start : start + _CHUNK]
        rows = [event for event, _ in chunk]
        cards = list(dict.fromkeys(e["card_id"] for e in rows))
        states = dict(zip(cards, store.read(cards), strict=True))
        batch = fold_events(states, rows, event_columns(rows), [off for _, (_, off) in chunk])
        store.write(batch.updates, batch.positions)
    if not from_dump(history):  # row numbers are not the live offsets: before all of them
        store.states = {card: rebase(blob) or blob for card, blob in store.states.items()}
    highs = {card: high_position(blob) for card, blob in store.states.items()}
    written = stale = failed = 0
    error: ErrorKind | None = None
    cards = list(store.states)
    for start in range(0, len(cards), _CHUNK):
        part = cards[start : start + _CHUNK]
        done = write_states(
            client, prefix, {c: store.states[c] for c in part}, {c: highs[c] for c in part}, ttl_s
        )
        written, stale, failed = written + done.written, stale + done.stale, failed + done.failed
        error = error or done.error
    return Seeded(len(events), len(cards), written, stale, failed, error)
