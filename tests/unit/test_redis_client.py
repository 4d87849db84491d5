"""The Redis client factory's refusals (no server needed): one line naming the setting."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import redis

from streamer.errors import ConfigError
from streamer.features.redis_client import (
    attempt_timeout,
    classify,
    make_redis_client,
    parse_sentinels,
    where,
)


@pytest.fixture
def pem(tmp_path: Path) -> str:
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("http://h:6379", {}, "STREAMER_REDIS_URL must start with"),
        ("redis://h:6379", {"ssl_ca_certs": "PEM"}, "STREAMER_REDIS_SSL_CA_CERTS set but"),
        ("unix:///tmp/r.sock", {"ssl_certfile": "PEM"}, "is not rediss://"),
        ("rediss://h:6379", {"ssl_keyfile": "PEM"}, "KEYFILE needs STREAMER_REDIS_SSL_CERTFILE"),
        ("rediss://h:6379", {"ssl_ca_certs": "/no/such/ca.crt"}, "not a readable file"),
        ("redis://h:6379", {"timeout_ms": 0}, "STREAMER_REDIS_TIMEOUT_MS must be > 0"),
        ("unix:///tmp/r.sock", {"mode": "cluster"}, "cluster needs a redis:// or rediss://"),
        ("redis://h:6379", {"mode": "sentinel"}, "needs STREAMER_REDIS_SENTINELS"),
        ("rediss://h/0", {"mode": "sentinel", "sentinels": [("s", 1)], "service": "m"}, "TLS"),
    ],
)
def test_bad_settings_are_one_line(
    url: str, kwargs: dict[str, object], message: str, pem: str
) -> None:
    args: dict[str, object] = {"password": "hunter2", "timeout_ms": 100}
    args |= {k: pem if v == "PEM" else v for k, v in kwargs.items()}
    with pytest.raises(ConfigError, match=message) as info:
        make_redis_client(url, **args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert "hunter2" not in str(info.value)


def test_clients_fail_fast_and_never_retry_inside_redis_py(pem: str) -> None:
    client = make_redis_client(
        "rediss://:pw@h:6380/2", password=None, timeout_ms=50, ssl_ca_certs=pem, username="app"
    )
    kw = client.connection_pool.connection_kwargs
    assert kw["socket_timeout"] == kw["socket_connect_timeout"] == 0.05
    assert kw["retry"].get_retries() == 0
    assert kw["ssl_ca_certs"] == pem
    assert kw["username"] == "app"
    assert where(client) == "rediss://h:6380/2"  # no credentials


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (redis.AuthenticationError("invalid username-password pair"), "auth"),
        (redis.ResponseError("NOAUTH Authentication required."), "auth"),
        (redis.ResponseError("WRONGPASS invalid username-password pair"), "auth"),
        (redis.exceptions.NoPermissionError("NOPERM no permission to run 'mget'"), "auth"),
        (redis.ConnectionError("Error 111 connecting. Connection refused."), "outage"),
        (redis.TimeoutError("Timeout reading from socket"), "outage"),
        (ConnectionResetError(104, "reset"), "outage"),
        (redis.ResponseError("LOADING Redis is loading the dataset in memory"), "outage"),
    ],
)
def test_classify(exc: BaseException, kind: str) -> None:
    assert classify(exc) == kind


def test_a_tls_failure_underneath_a_connection_error_is_tls() -> None:
    outer = redis.ConnectionError("Error while reading from socket")
    outer.__context__ = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED]")
    assert classify(outer) == "tls"


def test_sentinels_are_host_port_pairs_and_anything_else_is_one_line() -> None:
    assert parse_sentinels(" a:1, b.example:26379 ,") == [("a", 1), ("b.example", 26379)]
    assert parse_sentinels("") == []
    with pytest.raises(ConfigError, match="'b' is not host:port"):
        parse_sentinels("a:1,b")


def test_cluster_and_sentinel_clients_connect_lazily_and_keep_the_fail_fast_timeout() -> None:
    # Nothing listens on these ports: building the clients must not connect.
    cluster = make_redis_client("redis://:pw@127.0.0.1:1/0", password=None, timeout_ms=50,
                                mode="cluster")  # fmt: skip
    assert attempt_timeout(cluster) == 0.05
    assert where(cluster) == "Redis Cluster via redis://127.0.0.1:1"  # no credentials
    with pytest.raises(redis.ConnectionError, match="Redis Cluster unreachable"):
        cluster.ping()
    sentinel = make_redis_client("redis://x/3", password="pw", timeout_ms=50, mode="sentinel",
                                 sentinels=[("127.0.0.1", 1)], service="m")  # fmt: skip
    assert attempt_timeout(sentinel) == 0.05
    assert where(sentinel) == "Redis Sentinel service m"
    assert sentinel.connection_pool.connection_kwargs["db"] == 3
    with pytest.raises(redis.ConnectionError):
        sentinel.ping()
