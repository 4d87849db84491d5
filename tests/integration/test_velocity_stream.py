"""The velocity state on the real Redis, through the kernel the stream and the API use.

A card-testing burst (30 transactions, 4 s apart, 30 merchants) must not look like 30
quiet cards: each event sees the ones before it. The API reads the stream's state and
records nothing; `features load --history` seeds the state the stream then continues.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import redis

from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import FeatureCache, VelocityMode
from streamer.features.loader import load_command
from streamer.model.registry import load_model
from streamer.scoring.kernel import ScoringKernel
from streamer.testing import sample_event
from tests.integration.backfill_files import write_avro
from tests.integration.mlflow_helpers import MODELS, cli
from tests.integration.streamer_proc import streamer_env

START = 1_764_000_000_000


def _kernel(redis_url: str, prefix: str, velocity: VelocityMode) -> ScoringKernel:
    model = load_model("fraud-gbt@2", MODELS)
    cache = FeatureCache(
        redis.Redis.from_url(redis_url),
        prefix=prefix,
        card_defaults=model.card_defaults,
        merchant_defaults=model.merchant_defaults,
        breaker=CircuitBreaker(3, 5.0),
        velocity=velocity,
    )
    return ScoringKernel(model, cache, feature_logging=True)


def _burst(card: str, n: int = 30, start: int = START) -> list[dict[str, Any]]:
    return [
        sample_event(
            transaction_id=f"{card}-t{i}",
            card_id=card,
            merchant_id=f"m-{i}",
            amount_minor=150,
            event_time=start + 4_000 * i,
        )
        for i in range(n)
    ]


def test_a_card_testing_burst_counts_up_event_by_event(redis_url: str, redis_prefix: str) -> None:
    load_command(
        redis.Redis.from_url(redis_url),
        prefix=redis_prefix,
        file=None,
        seed=7,
        n_cards=50,
        n_merchants=40,
    )
    kernel = _kernel(redis_url, redis_prefix, "read-write")
    logged, scores = [], []
    for offset, event in enumerate(_burst("card-burst")):  # one arrival per batch
        scored = kernel.score([event], [(0, 100 + offset)])
        logged.append(scored.columns["features"][0])
        scores.append(float(scored.scores[0]))
    assert [f["txn_count_1h"] for f in logged] == list(range(30))
    assert [f["distinct_merchants_24h"] for f in logged] == list(range(30))
    assert [f["seconds_since_last_txn"] for f in logged[1:]] == [4.0] * 29
    assert len(set(scores)) > 1  # the thirtieth does not score like the first
    assert scores[-1] > scores[0]


def test_a_replayed_batch_gets_the_features_it_had_and_leaves_the_state(
    redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    kernel = _kernel(redis_url, redis_prefix, "read-write")
    events = _burst("card-replay", 12)
    sources = [(0, 500 + i) for i in range(12)]
    first = kernel.score(events, sources).columns["features"]
    stored = {k: client.get(k) for k in client.scan_iter(f"{redis_prefix}vel:*")}
    again = kernel.score(events[4:], sources[4:]).columns["features"]  # kill -9, rewind
    assert again == first[4:]
    assert {k: client.get(k) for k in client.scan_iter(f"{redis_prefix}vel:*")} == stored


def test_the_api_reads_the_streams_state_and_records_nothing(
    redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    stream = _kernel(redis_url, redis_prefix, "read-write")
    api = _kernel(redis_url, redis_prefix, "read")
    events = _burst("card-api", 5)
    stream.score(events, [(0, i) for i in range(5)])
    before = {k: client.get(k) for k in client.scan_iter(f"{redis_prefix}vel:*")}
    probe = sample_event(transaction_id="api-1", card_id="card-api", event_time=START + 30_000)
    for _ in range(3):
        seen = api.score([probe], [(-1, -1)]).columns["features"][0]
        assert seen["txn_count_1h"] == 5.0
    assert {k: client.get(k) for k in client.scan_iter(f"{redis_prefix}vel:*")} == before


def test_features_load_history_seeds_the_state_the_stream_continues(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    history = write_avro(tmp_path / "history.avro", _burst("card-warm", 7))
    env = streamer_env(redis_url=redis_url, redis_key_prefix=redis_prefix)
    done = cli("features", "load", "--history", str(history), env=env)
    assert done.returncode == 0, done.stderr
    assert "seeded velocity state of 1 cards from 7 events" in done.stderr
    kernel = _kernel(redis_url, redis_prefix, "read-write")
    live = sample_event(transaction_id="live-1", card_id="card-warm", event_time=START + 60_000)
    seen = kernel.score([live], [(3, 0)]).columns["features"][0]  # the partition's first offset
    assert seen["txn_count_1h"] == 7.0  # the history counts; offset 0 is new to it
    assert np.isclose(seen["seconds_since_last_txn"], 60.0 - 24.0)
