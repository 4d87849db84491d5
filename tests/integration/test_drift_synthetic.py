"""The demo's own traffic reads as no drift; deliberately shifted traffic reads as drift.

Features are built exactly as serving builds them: ``streamer features load --synthetic``
writes the synthetic snapshot to a real Redis, ``FeatureCache.fetch`` reads it back with
one MGET per batch, ``event_columns`` + ``assemble`` make the matrix from events that
``streamer produce``'s generator makes, and the model of the registry scores it. Only the
broker is left out: it carries bytes and changes no feature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from streamer import features
from streamer.dev import synth
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import FeatureCache
from streamer.features.loader import load_feature_set, synthetic_features
from streamer.model.registry import load_model
from streamer.model.scorer import Scorer
from streamer.observability.drift import DriftReading, WindowedDrift

MODELS = Path(__file__).parents[2] / "models"
DAY_MS = 86_400_000
NOW_MS = 1_767_225_600_000 + 40 * DAY_MS  # a day long after training, midnight UTC
SEED, CARDS, MERCHANTS = 7, 5000, 500  # what `streamer produce` and `features load` use
BATCH = 500
EVENTS = 12_000  # one minute at the demo's 200 events/s


def _shift(events: list[dict[str, Any]], pop: synth.Population) -> None:
    """Amounts x3, and half the traffic moved to merchants in countries cards are not from."""
    rng = np.random.default_rng(11)
    abroad = np.flatnonzero(~np.isin(pop.merchant_country, np.unique(pop.card_home)))
    for event in events:
        event["amount_minor"] *= 3
        if rng.random() < 0.5:
            m = int(rng.choice(abroad))
            event["merchant_id"] = pop.merchant_ids[m]
            event["merchant_country"] = synth.COUNTRIES[pop.merchant_country[m]]


def _window(
    redis_client: redis.Redis, prefix: str, hour: int, *, shifted: bool, spec: str
) -> DriftReading:
    start_ms = NOW_MS + hour * 3_600_000
    snapshot = synthetic_features(SEED, start_ms, n_cards=CARDS, n_merchants=MERCHANTS)
    load_feature_set(redis_client, prefix, snapshot)
    model = load_model(spec, MODELS)
    cache = FeatureCache(
        redis_client,
        prefix=prefix,
        card_defaults=model.card_defaults,
        merchant_defaults=model.merchant_defaults,
        breaker=CircuitBreaker(),
    )
    pop = synth.make_population(SEED, CARDS, MERCHANTS)
    events = synth.generate_events(pop, EVENTS, seed=5, start_ms=start_ms, rate_per_s=200)
    if shifted:
        _shift(events, pop)
    scorer = Scorer(model)
    drift = WindowedDrift(model.metadata, window_s=600, now=lambda: 0.0)  # one window
    for i in range(0, EVENTS, BATCH):
        batch = events[i : i + BATCH]
        found = cache.fetch([e["card_id"] for e in batch], [e["merchant_id"] for e in batch])
        assert not found.degraded
        assert found.card_found.all()
        assert found.merchant_found.all()
        columns = features.event_columns(batch)
        matrix = features.assemble(
            columns, found.card, found.merchant, model.metadata.feature_names
        )
        drift.observe(columns.event_time_ms, scorer.score(matrix), matrix)
    return drift.read()


@pytest.mark.parametrize("hour", [3, 14], ids=["night", "afternoon"])
def test_matched_synthetic_traffic_reads_no_drift(
    redis_client: redis.Redis, redis_prefix: str, hour: int
) -> None:
    reading = _window(redis_client, redis_prefix, hour, shifted=False, spec="fraud-gbt@2")
    assert reading.events == EVENTS
    worst = max(reading.psi, key=lambda name: reading.psi[name])
    assert reading.psi[worst] < 0.1, f"{worst}: {reading.psi[worst]:.3f}"
    assert len(reading.psi) == 27  # the score and the 26 non-calendar inputs


@pytest.mark.parametrize("hour", [3, 14], ids=["night", "afternoon"])
def test_shifted_traffic_reads_drift_within_one_window(
    redis_client: redis.Redis, redis_prefix: str, hour: int
) -> None:
    reading = _window(redis_client, redis_prefix, hour, shifted=True, spec="fraud-gbt@2")
    assert reading.psi["score"] > 0.25
    for name in ("amount", "amount_ratio", "is_foreign", "country_changed"):
        assert reading.psi[name] > 0.25, name


def test_version_1_reference_reads_the_night_as_drift(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The cause of issue 12's 4.79: a whole-day reference against a night-time window."""
    night = _window(redis_client, redis_prefix, 3, shifted=False, spec="fraud-gbt@1")
    day = _window(redis_client, redis_prefix, 14, shifted=False, spec="fraud-gbt@1")
    assert night.psi["score"] > 1.0
    assert day.psi["score"] < 0.1
