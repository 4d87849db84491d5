"""Training features of a synthetic history, through the stream's own definitions. Pure.

What the stream would have given the model for each event of a history, computed the way
every offline path computes it: the snapshot's card and merchant rows (from the
population, as ``features load --synthetic`` writes them: only their static fields
survive), the velocity fields replaced by ``enrichment.with_velocity`` folding the whole
history in file order (position = index, the order a file stands for), then
``engineering.assemble``. No velocity feature is computed here: the fold is the one
definition, and folding the history as one batch equals folding it batch by batch (the
fold's guarantee), so these rows are the kernel's rows (``tests/unit/test_attacks.py``
checks it, exactly).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.codec.columns import column_of
from streamer.dev import synth
from streamer.features.cache import Features, VelocityRead
from streamer.features.engineering import FEATURE_NAMES, EventColumns, assemble, event_columns
from streamer.features.enrichment import with_velocity
from streamer.features.layout import CARD_DEFAULTS, CARD_FIELDS, MERCHANT_FIELDS

F64 = npt.NDArray[np.float64]
Event = Mapping[str, Any]


def snapshot_tables(pop: synth.Population, now_ms: int) -> tuple[F64, F64]:
    """(one card row per card, one merchant row per merchant) of the population's snapshot,
    in ``CARD_FIELDS`` / ``MERCHANT_FIELDS`` order, as ``features load --synthetic`` makes
    them at ``now_ms``."""
    cards = synth.card_features(pop, now_ms)
    merchants = synth.merchant_features(pop)
    return (
        np.column_stack([cards[name] for name in CARD_FIELDS]),
        np.column_stack([merchants[name] for name in MERCHANT_FIELDS]),
    )


def snapshot_rows(pop: synth.Population, events: Sequence[Event], now_ms: int) -> tuple[F64, F64]:
    """The snapshot's (card rows, merchant rows) aligned with ``events``."""
    cards, merchants = snapshot_tables(pop, now_ms)
    card_at = {card: i for i, card in enumerate(pop.card_ids)}
    merchant_at = {merchant: i for i, merchant in enumerate(pop.merchant_ids)}
    card_rows = np.fromiter(map(card_at.__getitem__, column_of(events, "card_id")), np.intp)
    merchant_rows = np.fromiter(
        map(merchant_at.__getitem__, column_of(events, "merchant_id")), np.intp
    )
    return cards[card_rows], merchants[merchant_rows]


def velocity_features(
    events: Sequence[Event],
    card: F64,
    merchant: F64,
    *,
    columns: EventColumns | None = None,
    card_defaults: F64 = CARD_DEFAULTS,
) -> Features:
    """``card`` and ``merchant`` (aligned with ``events``) with every event's velocity
    fields folded from the events before it in file order, starting from no state."""
    n = len(events)
    cards = list(dict.fromkeys(column_of(events, "card_id")))
    found = np.ones(n, dtype=np.bool_)
    snapshot = Features(
        card, merchant, found, found, False, VelocityRead(cards, [None] * len(cards))
    )
    cols = event_columns(events) if columns is None else columns
    enriched, _ = with_velocity(snapshot, events, cols, range(n), card_defaults)
    return enriched


def feature_matrix(
    events: Sequence[Event],
    card: F64,
    merchant: F64,
    feature_names: Sequence[str] = FEATURE_NAMES,
    *,
    card_defaults: F64 = CARD_DEFAULTS,
) -> npt.NDArray[np.float32]:
    """The model input of every event of a history (file order), as the stream scores it:
    ``velocity_features`` then ``assemble``."""
    columns = event_columns(events)
    enriched = velocity_features(
        events, card, merchant, columns=columns, card_defaults=card_defaults
    )
    return assemble(columns, enriched.card, enriched.merchant, feature_names)
