"""The feature cache reads each distinct entity once and gives every event its own entity's
row, whatever the repeats and their order in the batch."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import FeatureCache
from streamer.features.layout import (
    CARD_DEFAULTS,
    MERCHANT_DEFAULTS,
    card_key,
    merchant_key,
    pack,
)
from streamer.features.velocity_store import velocity_key
from streamer.testing import InMemoryRedis

_IDS = st.lists(st.sampled_from(["a", "b", "c", "d", "é", "card 7"]), min_size=1, max_size=25)


@given(_IDS, _IDS, st.sets(st.sampled_from(["a", "b", "c", "é"])), st.data())
def test_each_event_gets_its_entities_row(
    cards: list[str], merchants: list[str], stored: set[str], data: st.DataObject
) -> None:
    merchants = data.draw(
        st.lists(st.sampled_from(merchants), min_size=len(cards), max_size=len(cards))
    )
    redis = InMemoryRedis()
    row = {key: float(i + 1) for i, key in enumerate(sorted(stored))}
    for key, value in row.items():
        redis.data[card_key("p:", key)] = pack(np.full(CARD_DEFAULTS.size, value))
        redis.data[merchant_key("p:", key)] = pack(np.full(MERCHANT_DEFAULTS.size, -value))
        redis.data[velocity_key("p:", key)] = f"state of {key}".encode()
    cache = FeatureCache(
        redis,  # type: ignore[arg-type]
        prefix="p:",
        card_defaults=CARD_DEFAULTS,
        merchant_defaults=MERCHANT_DEFAULTS,
        breaker=CircuitBreaker(),
        velocity="read",
    )
    features = cache.fetch(cards, merchants)
    for i, (card, merchant) in enumerate(zip(cards, merchants, strict=True)):
        expected_card = np.full(CARD_DEFAULTS.size, row[card]) if card in row else CARD_DEFAULTS
        expected_merchant = (
            np.full(MERCHANT_DEFAULTS.size, -row[merchant])
            if merchant in row
            else MERCHANT_DEFAULTS
        )
        assert np.array_equal(features.card[i], expected_card)
        assert np.array_equal(features.merchant[i], expected_merchant)
        assert features.card_found[i] == (card in row)
        assert features.merchant_found[i] == (merchant in row)
    assert features.velocity is not None
    assert features.velocity.cards == list(dict.fromkeys(cards))  # first seen first
    assert features.velocity.states == [
        f"state of {card}".encode() if card in row else None for card in features.velocity.cards
    ]
    distinct = len(set(cards)) + len(set(merchants))
    assert sum(cache.stats.lookups.values()) == distinct
