"""The Redis client factory's refusals (no server needed): one line naming the setting."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import redis

from streamer.errors import ConfigError
from streamer.features.redis_client import classify, make_redis_client, where


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
