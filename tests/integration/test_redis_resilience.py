"""The feature cache against a real Redis that dies, comes back, stalls, or refuses a password.

Each test starts its own redis-server (it stops and restarts it), so the shared one is
never touched. Figures (time to recover) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from streamer.dev.devstack.redis import RedisServer
from streamer.errors import DependencyError
from streamer.features import layout
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import COMPLETE, FeatureCache
from streamer.features.redis_client import RedisCredentialsError, check_redis, make_redis_client

SECRET = "s3cret-not-for-logs"
CARD_DEFAULTS = np.zeros(4)
MERCHANT_DEFAULTS = np.zeros(3)


def make_cache(
    url: str, *, password: str | None = None, budget_s: float = 0.25, timeout_ms: float = 100
) -> FeatureCache:
    return FeatureCache(
        make_redis_client(url, password=password, timeout_ms=timeout_ms),
        prefix="t:",
        card_defaults=CARD_DEFAULTS,
        merchant_defaults=MERCHANT_DEFAULTS,
        breaker=CircuitBreaker(),
        budget_s=budget_s,
    )


def write_features(srv: RedisServer) -> None:
    client = redis.Redis(**srv.client_kwargs())
    client.set(layout.card_key("t:", "c1"), np.arange(4, dtype="<f8").tobytes())
    client.set(layout.merchant_key("t:", "m1"), np.arange(3, dtype="<f8").tobytes())
    client.close()


def first_complete_after(cache: FeatureCache, limit_s: float = 5.0) -> float:
    """Seconds until a fetch (one every 10 ms, as batches would) is complete again."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if cache.fetch(["c1"], ["m1"]).status()[0] == COMPLETE:
            return time.monotonic() - start
        time.sleep(0.01)  # why: one fetch every 10 ms, as batches would
    return float("inf")


def take_down(srv: RedisServer, cache: FeatureCache, outage_s: float) -> None:
    """Stop Redis and keep fetching through the outage: every batch degrades, none stalls."""
    srv.stop()
    deadline = time.monotonic() + outage_s
    while time.monotonic() < deadline:
        began = time.monotonic()
        assert cache.fetch(["c1"], ["m1"]).degraded
        assert time.monotonic() - began < 0.5  # never stalls the loop
        time.sleep(0.01)  # why: one fetch every 10 ms, as batches would
    assert cache.breaker.state != "closed"


def test_recovers_within_a_second_of_redis_answering_again(own_redis: RedisServer) -> None:
    write_features(own_redis)
    cache = make_cache(own_redis.url)
    assert cache.fetch(["c1"], ["m1"]).status()[0] == COMPLETE

    take_down(own_redis, cache, outage_s=2.0)
    own_redis.start()  # same port; returns once it answers PING
    write_features(own_redis)  # no persistence: the restarted Redis is empty
    recovery = first_complete_after(cache)
    print(f"\nfirst COMPLETE fetch {recovery * 1000:.0f} ms after Redis answered again")
    assert recovery <= 1.0
    assert cache.stats.errors > 0
    assert cache.stats.auth_errors == 0
    assert cache.last_error is None


def test_available_notices_recovery_while_consumption_is_paused(own_redis: RedisServer) -> None:
    """Redis required: the loop pauses and asks ``available()``; no fetch probes for it."""
    cache = make_cache(own_redis.url)
    assert cache.available()
    own_redis.stop()
    assert cache.fetch(["c1"], ["m1"]).degraded  # one failure: the breaker is still closed
    assert cache.breaker.state == "closed"
    assert not cache.available()  # but the loop must not take the next batch
    take_down(own_redis, cache, outage_s=0.5)
    assert not cache.available()
    own_redis.start()
    start = time.monotonic()
    while not cache.available():
        assert time.monotonic() - start < 5.0
        time.sleep(0.05)  # why: poll interval of the wait for available()
    print(f"\navailable() true {(time.monotonic() - start) * 1000:.0f} ms after Redis returned")
    assert time.monotonic() - start <= 1.0
    assert cache.breaker.state == "closed"


def stall(srv: RedisServer, seconds: float) -> None:
    """Hold every client's commands for ``seconds`` (CLIENT PAUSE): a busy or slow Redis."""
    client = redis.Redis(**srv.client_kwargs())
    client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")
    client.close()


def test_one_slow_reply_is_retried_within_the_budget(own_redis: RedisServer) -> None:
    write_features(own_redis)
    cache = make_cache(own_redis.url, timeout_ms=250, budget_s=0.6)
    cache.fetch(["c1"], ["m1"])  # connected, as in a running loop
    stall(own_redis, 0.375)  # longer than one 250 ms try, shorter than two
    features = cache.fetch(["c1"], ["m1"])
    assert not features.degraded
    assert features.status()[0] == COMPLETE
    assert cache.stats.retries == 1
    assert cache.stats.errors == 0


def test_a_connection_closed_by_redis_costs_one_retry_not_a_degraded_batch(
    own_redis: RedisServer,
) -> None:
    """The cache keeps one connection (``HeldConnection``); Redis may close it (timeout, restart,
    CLIENT KILL). The next fetch finds it dead, connects again and is still complete."""
    write_features(own_redis)
    cache = make_cache(own_redis.url)
    assert cache.fetch(["c1"], ["m1"]).status()[0] == COMPLETE
    admin = redis.Redis(**own_redis.client_kwargs())
    killed = admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    admin.close()
    assert killed >= 1
    for _ in range(3):
        features = cache.fetch(["c1"], ["m1"])
        assert features.status()[0] == COMPLETE
    assert cache.stats.retries == 1
    assert cache.stats.errors == 0


def test_a_slow_reply_beyond_the_budget_degrades_the_batch(own_redis: RedisServer) -> None:
    write_features(own_redis)
    cache = make_cache(own_redis.url, timeout_ms=250, budget_s=0.3)  # no room for a second try
    cache.fetch(["c1"], ["m1"])
    stall(own_redis, 0.6)
    began = time.monotonic()
    features = cache.fetch(["c1"], ["m1"])
    spent = time.monotonic() - began
    assert features.degraded
    assert spent < 0.45
    assert cache.stats.retries == 0
    assert cache.stats.errors == 1


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path / "redis", password=SECRET)
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("password", ["wrong-password", None])
def test_a_refused_password_is_an_auth_error_not_an_outage(
    auth_server: RedisServer, password: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(auth_server.url, password=password)
    features = cache.fetch(["c1"], ["m1"])
    assert features.degraded
    assert cache.stats.auth_errors == 1
    assert cache.stats.errors == 0
    assert cache.stats.retries == 0  # a refused password is not retried
    assert cache.last_error == "auth"
    with pytest.raises(RedisCredentialsError, match="authentication failed") as info:
        check_redis(make_redis_client(auth_server.url, password=password, timeout_ms=500))
    message = str(info.value)
    assert "\n" not in message
    assert f"127.0.0.1:{auth_server.port}" in message
    for text in (message, caplog.text):
        assert SECRET not in text
        assert "wrong-password" not in text


def test_the_right_password_passes_the_check(auth_server: RedisServer) -> None:
    check_redis(make_redis_client(auth_server.url, password=SECRET, timeout_ms=500))
    write_features(auth_server)
    cache = make_cache(auth_server.url, password=SECRET)
    assert cache.fetch(["c1"], ["m1"]).status()[0] == COMPLETE


def test_a_dead_redis_is_unreachable_not_an_auth_error(tmp_path: Path) -> None:
    srv = RedisServer(tmp_path / "redis")
    srv.start()
    url = srv.url.replace("redis://", f"redis://:{SECRET}@")
    srv.stop()
    began = time.monotonic()
    with pytest.raises(DependencyError, match="unreachable") as info:
        check_redis(make_redis_client(url, password=None, timeout_ms=200))
    assert time.monotonic() - began < 1.0
    assert not isinstance(info.value, RedisCredentialsError)
    assert SECRET not in str(info.value)
