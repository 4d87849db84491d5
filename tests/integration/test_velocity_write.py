"""A batch's velocity write runs in Redis while the batch is scored, and is answered before
the batch's scores are handed on; a write lost with Redis is counted, as it always was.

The kernel sends the new states as soon as the fold has made them and waits for the reply
once the batch is scored and explained. These tests hold the promises around that: the
model runs before the write is waited for; when ``score`` returns, every state is in
Redis; a read never overtakes a write still in flight; Redis killed with the write in
flight costs that write (counted, logged), never the batch.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

import numpy as np
import pytest
import redis

from streamer.dev.devstack.redis import RedisServer
from streamer.dev.devstack.redis_cluster import RedisClusterGroup
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import DEGRADED, FeatureCache
from streamer.features.redis_client import make_redis_client
from streamer.features.velocity import VelocityBatch, fold
from streamer.features.velocity_store import velocity_key
from streamer.model.registry import LoadedModel, load_model
from streamer.model.scorer import Scorer
from streamer.scoring.kernel import ScoringKernel
from streamer.testing import sample_event
from tests.integration.mlflow_helpers import MODELS

START = 1_764_000_000_000


def _cache(client: redis.Redis, prefix: str, model: LoadedModel) -> FeatureCache:
    return FeatureCache(
        client,
        prefix=prefix,
        card_defaults=model.card_defaults,
        merchant_defaults=model.merchant_defaults,
        breaker=CircuitBreaker(3, 5.0),
        velocity="read-write",
    )


def _events(cards: list[str], start: int = START) -> list[dict[str, Any]]:
    return [
        sample_event(transaction_id=f"{c}-t", card_id=c, merchant_id="m-1", event_time=start)
        for c in cards
    ]


class _Watching:
    """The model, noting when it runs how many velocity states the cache had counted
    written, and whether Redis holds the batch's states (``keys``) within 2 s: it does,
    the write being sent before the model runs and answered after."""

    def __init__(self, model: LoadedModel, cache: FeatureCache, client: redis.Redis) -> None:
        self._scorer, self._cache, self._client = Scorer(model), cache, client
        self.keys: list[str] = []
        self.written_then: list[int] = []
        self.stored_then: list[bool] = []

    def score(self, matrix: Any) -> Any:
        self.written_then.append(self._cache.stats.velocity["write", "written"])
        deadline = time.monotonic() + 2.0
        while None in self._client.mget(self.keys) and time.monotonic() < deadline:
            time.sleep(0.005)  # why: Redis runs the script on its own; poll until it did
        self.stored_then.append(None not in self._client.mget(self.keys))
        return self._scorer.score(matrix)


def test_the_write_runs_while_the_batch_is_scored_and_is_answered_when_score_returns(
    redis_url: str, redis_prefix: str
) -> None:
    model = load_model("fraud-gbt@2", MODELS)
    client = redis.Redis.from_url(redis_url)
    cache = _cache(client, redis_prefix, model)
    watching = _Watching(model, cache, client)
    kernel = ScoringKernel(model, cache, scorer=watching)
    kernel.score(_events(["card-w"]), [(0, 1)])  # Redis caches the script (EVAL, at once)
    cards = [f"card-w{i}" for i in range(40)]
    watching.keys = [velocity_key(redis_prefix, c) for c in cards]
    scored = kernel.score(_events(cards), [(0, 10 + i) for i in range(len(cards))])
    assert len(scored.rows) == len(cards)
    assert watching.stored_then[-1]  # in Redis while the model ran...
    assert watching.written_then[-1] == 1  # ...its reply not yet waited for
    assert cache.stats.velocity["write", "written"] == 1 + len(cards)  # answered on return
    client.close()


def _first_transactions(cards: list[str], position: int) -> VelocityBatch:
    n = len(cards)
    return fold({}, cards, [f"{c}-t" for c in cards], [position] * n, [START] * n, [9.5] * n,
                ["m"] * n, [276.0] * n)  # fmt: skip


def test_a_read_waits_for_the_write_still_in_flight(redis_url: str, redis_prefix: str) -> None:
    model = load_model("fraud-gbt@2", MODELS)
    cache = _cache(redis.Redis.from_url(redis_url), redis_prefix, model)
    cards = [f"card-r{i}" for i in range(200)]
    batch = _first_transactions(cards, 5)
    cache.record_velocity(batch)  # sent; nobody asked for its reply
    read = cache.fetch(cards, ["m"] * len(cards)).velocity
    assert read is not None
    assert read.states == [batch.updates[c] for c in cards]
    assert cache.stats.velocity["write", "written"] == len(cards)


class _KilledMidWrite(FeatureCache):
    """A cache whose Redis (``doomed``) stops just before the next batch's write is sent
    and is killed -9 just after, so the write is in flight, never run, when Redis dies."""

    doomed: RedisServer | None = None

    def record_velocity(self, batch: VelocityBatch) -> None:
        server, self.doomed = self.doomed, None
        if server is not None:
            os.kill(server.pid, signal.SIGSTOP)
        super().record_velocity(batch)
        if server is not None:
            server.kill()


def test_redis_killed_with_the_write_in_flight_costs_the_write_not_the_batch(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    model = load_model("fraud-gbt@2", MODELS)
    client = make_redis_client(own_redis.url, password=None, timeout_ms=200)
    cache = _KilledMidWrite(
        client, prefix="p:", card_defaults=model.card_defaults,
        merchant_defaults=model.merchant_defaults, breaker=CircuitBreaker(3, 5.0),
        velocity="read-write",
    )  # fmt: skip
    cache.doomed = own_redis
    kernel = ScoringKernel(model, cache)
    cards = [f"card-k{i}" for i in range(30)]
    with caplog.at_level(logging.WARNING, logger="streamer.features.cache"):
        scored = kernel.score(_events(cards), [(0, i) for i in range(len(cards))])
    assert len(scored.rows) == len(cards)  # every event scored, with its features
    assert DEGRADED not in scored.statuses.tolist()  # its read succeeded
    assert np.isfinite(scored.scores).all()
    assert cache.stats.velocity["write", "failed"] == len(cards)
    assert cache.stats.velocity["write", "written"] == 0
    assert cache.stats.retries == 1  # sent once more, as for any outage
    assert "velocity state write failed (outage): 30 cards" in caplog.text
    own_redis.start()  # empty again: the next batch reads no state and writes its own
    again = kernel.score(_events(cards, START + 1), [(0, 100 + i) for i in range(len(cards))])
    assert len(again.rows) == len(cards)
    assert cache.stats.velocity["write", "written"] == len(cards)
    client.close()


def test_on_a_cluster_a_read_waits_for_the_write_still_in_flight(
    cluster: RedisClusterGroup, redis_prefix: str
) -> None:
    model = load_model("fraud-gbt@2", MODELS)
    client = make_redis_client(cluster.url, password=None, timeout_ms=2000, mode="cluster")
    cache = _cache(client, redis_prefix, model)
    cards = [f"card-c{i}" for i in range(200)]  # every primary's slots
    batch = _first_transactions(cards, 5)
    cache.record_velocity(batch)  # sent to every primary; nobody asked for the replies
    read = cache.fetch(cards, ["m"] * len(cards)).velocity
    assert read is not None
    assert read.states == [batch.updates[c] for c in cards]
    assert cache.stats.velocity["write", "written"] == len(cards)
    client.close()
