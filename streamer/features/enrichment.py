"""Velocity enrichment of one batch: each card's velocity fields come from its state.

The snapshot (``features load``) holds what does not move with the stream: a card's age and
home country, a merchant's risk. The velocity fields of the card vector (counts, distinct
merchants, the last transaction's time and country, the 30-day amount statistics; see
``velocity.VELOCITY_FIELDS``) are replaced, for every event, by what ``velocity.fold``
computes from the card's earlier events. The snapshot's values for those fields are not
added to or mixed in: once velocity state is on, the state is their only source, and a card
without state has no earlier events (zero counts, no last transaction). Amount statistics of
an empty 30-day window take the model's training defaults. ``features load --history``
seeds the state from history, so a new deployment starts warm.

The stream (Redis) and every offline path (``score-file``, ``features build``, the gate;
state in memory, ``OfflineVelocity``) call this one function, so they cannot differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.codec.columns import column_of
from streamer.features.cache import Features, VelocityRead
from streamer.features.engineering import EventColumns
from streamer.features.velocity import VelocityBatch, fold, overlay
from streamer.features.velocity_store import MemoryVelocityStore

AFTER_EVERYTHING = 2**62
"""The position of an event that has none (the scoring API): it sees the whole state."""


def with_velocity(
    features: Features,
    events: Sequence[Mapping[str, Any]],
    columns: EventColumns,
    positions: Sequence[int],
    card_defaults: npt.NDArray[np.float64],
) -> tuple[Features, VelocityBatch | None]:
    """``features`` with the velocity fields of each event's card row replaced by the fold
    of its card's state over the batch, and the fold (new states, outcomes); unchanged when
    the source read no state (velocity off, or Redis unavailable: scored DEGRADED)."""
    read = features.velocity
    if read is None:
        return features, None
    if not read.recorded:  # nothing is recorded: no event of the batch counts for another
        positions = [AFTER_EVERYTHING] * len(positions)
    batch = fold_events(dict(zip(read.cards, read.states, strict=True)), events, columns, positions)
    card = overlay(features.card, batch.values, card_defaults)
    return replace(features, card=card), batch


def fold_events(
    states: Mapping[str, bytes | None],
    events: Sequence[Mapping[str, Any]],
    columns: EventColumns,
    positions: Sequence[int],
) -> VelocityBatch:
    """``velocity.fold`` over decoded events, with amounts in major units and countries as
    codes exactly as the model's columns hold them (``engineering.event_columns``)."""
    return fold(
        states,
        column_of(events, "card_id"),
        column_of(events, "transaction_id"),
        positions,
        columns.event_time_ms,
        columns.amount,
        column_of(events, "merchant_id"),
        columns.merchant_country,
    )


def positions_of(offsets: Sequence[int]) -> list[int]:
    """Each event's position in its card's order: the input offset, or after everything
    for an event that has no offset (negative: the scoring API)."""
    return [offset if offset >= 0 else AFTER_EVERYTHING for offset in offsets]


class OfflineVelocity:
    """A feature source whose velocity state lives in memory: the offline paths fold the
    file's own history (its order stands for the partition's), never touching the
    stream's state in Redis. The snapshot still comes from ``inner``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.store = MemoryVelocityStore()

    def fetch(
        self,
        card_ids: Sequence[str],
        merchant_ids: Sequence[str],
        *,
        meanwhile: Callable[[], object] | None = None,
    ) -> Features:
        """The snapshot's features with this store's states (its read is not split:
        ``meanwhile`` is left to the caller)."""
        found: Features = self.inner.fetch(card_ids, merchant_ids)
        cards = list(dict.fromkeys(card_ids))
        return replace(found, velocity=VelocityRead(cards, self.store.read(cards)))

    def record_velocity(self, batch: VelocityBatch) -> None:
        self.store.write(batch.updates, batch.positions)

    def use_defaults(
        self, card: npt.NDArray[np.float64], merchant: npt.NDArray[np.float64]
    ) -> None:
        use = getattr(self.inner, "use_defaults", None)
        if use is not None:
            use(card, merchant)

    def ping(self) -> bool:
        """Whether the snapshot's Redis answers (the offline paths ask once, first)."""
        return bool(self.inner.ping())
