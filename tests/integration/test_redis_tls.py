"""The Redis client factory against a real redis-server that serves TLS only and requires a
client certificate signed by its CA (mutual TLS), with AUTH on top; and over a unix socket.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from streamer.dev.devstack.redis import RedisServer, RedisTls
from streamer.errors import DependencyError
from streamer.features import layout
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import COMPLETE, FeatureCache
from streamer.features.redis_client import RedisCredentialsError, check_redis, make_redis_client
from tests.cli import streamer_cli
from tests.fixtures.tls import TlsFiles, make_tls_files

SECRET = "tls-s3cret-not-for-logs"


@pytest.fixture
def certs(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def tls_server(tmp_path: Path, certs: TlsFiles) -> Iterator[RedisServer]:
    tls = RedisTls(
        certs.ca, certs.server_cert, certs.server_key, certs.client_cert, certs.client_key
    )
    srv = RedisServer(tmp_path / "redis", tls=tls, password=SECRET)
    srv.start()
    yield srv
    srv.stop()


def tls_client(
    srv: RedisServer, certs: TlsFiles, password: str = SECRET, **overrides: str | None
) -> redis.Redis:
    """A client from the factory with the CA and client certificate, less ``overrides``."""
    files: dict[str, str | None] = {
        "ssl_ca_certs": str(certs.ca),
        "ssl_certfile": str(certs.client_cert),
        "ssl_keyfile": str(certs.client_key),
    }
    return make_redis_client(srv.url, password=password, timeout_ms=500, **(files | overrides))


def test_the_right_client_certificate_reads_features(
    tls_server: RedisServer, certs: TlsFiles
) -> None:
    assert tls_server.url.startswith("rediss://")
    client = tls_client(tls_server, certs)
    check_redis(client)
    client.set(layout.card_key("t:", "c1"), np.ones(2, "<f8").tobytes())
    client.set(layout.merchant_key("t:", "m1"), np.ones(2, "<f8").tobytes())
    cache = FeatureCache(
        client,
        prefix="t:",
        card_defaults=np.zeros(2),
        merchant_defaults=np.zeros(2),
        breaker=CircuitBreaker(),
    )
    assert cache.fetch(["c1"], ["m1"]).status()[0] == COMPLETE


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"ssl_certfile": None, "ssl_keyfile": None}, "no client certificate"),
        ({"ssl_ca_certs": None}, "server certificate not trusted"),
    ],
)
def test_a_refused_handshake_is_one_clear_line(
    tls_server: RedisServer,
    certs: TlsFiles,
    overrides: dict[str, str | None],
    reason: str,
) -> None:
    client = tls_client(tls_server, certs, **overrides)
    began = time.monotonic()
    with pytest.raises(RedisCredentialsError, match="TLS handshake failed") as info:
        check_redis(client)
    assert time.monotonic() - began < 2.0, reason
    message = str(info.value)
    assert "\n" not in message
    assert "STREAMER_REDIS_SSL_CERTFILE" in message
    assert SECRET not in message


def test_a_certificate_from_another_ca_is_refused(
    tls_server: RedisServer, certs: TlsFiles, tmp_path: Path
) -> None:
    stranger = make_tls_files(tmp_path / "other", ca_name="other-ca")
    client = tls_client(
        tls_server,
        certs,
        ssl_certfile=str(stranger.client_cert),
        ssl_keyfile=str(stranger.client_key),
    )
    with pytest.raises(RedisCredentialsError, match="TLS handshake failed"):
        check_redis(client)


def test_the_right_certificate_with_a_wrong_password_is_an_auth_error(
    tls_server: RedisServer, certs: TlsFiles
) -> None:
    client = tls_client(tls_server, certs, password="wrong-password")
    with pytest.raises(RedisCredentialsError, match="authentication failed") as info:
        check_redis(client)
    assert "wrong-password" not in str(info.value)


def test_plain_redis_url_to_a_tls_port_is_unreachable(tls_server: RedisServer) -> None:
    url = tls_server.url.replace("rediss://", "redis://")
    with pytest.raises(DependencyError, match="unreachable"):
        check_redis(make_redis_client(url, password=SECRET, timeout_ms=300))


def test_unix_socket(tmp_path: Path) -> None:
    socket = tmp_path / "redis.sock"
    srv = RedisServer(tmp_path / "redis", unix_socket=socket, password=SECRET)
    srv.start()
    try:
        client = make_redis_client(f"unix://{socket}?db=0", password=SECRET, timeout_ms=500)
        check_redis(client)
        assert client.set("k", b"v")
        assert client.get("k") == b"v"
        with pytest.raises(RedisCredentialsError, match="authentication failed") as info:
            check_redis(make_redis_client(f"unix://{socket}", password="nope", timeout_ms=500))
        assert f"unix://{socket}" in str(info.value)
    finally:
        srv.stop()


def test_features_load_honours_tls_and_a_client_certificate(
    tls_server: RedisServer, certs: TlsFiles
) -> None:
    env = {
        "STREAMER_REDIS_URL": tls_server.url,
        "STREAMER_REDIS_PASSWORD": SECRET,
        "STREAMER_REDIS_SSL_CA_CERTS": str(certs.ca),
        "STREAMER_REDIS_SSL_CERTFILE": str(certs.client_cert),
        "STREAMER_REDIS_SSL_KEYFILE": str(certs.client_key),
    }
    args = ("features", "load", "--synthetic", "--prefix", "t:", "--merchants", "5")
    loaded = streamer_cli(*args, "--cards", "20", env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert "20 cards, 5 merchants" in loaded.stderr
    assert tls_client(tls_server, certs).dbsize() == 25
    no_certificate = {k: v for k, v in env.items() if "CERTFILE" not in k and "KEYFILE" not in k}
    refused = streamer_cli(*args, "--cards", "1", env=no_certificate)
    assert refused.returncode == 3
    assert "TLS handshake failed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert SECRET not in refused.stderr + refused.stdout
