"""The one Redis client factory, and how Redis failures are told apart.

Every command that reads or writes Redis (``run``, ``features load``, ``score-file``,
``serve``, ``models gate``, ``monitor``) builds its client here, so AUTH, TLS with a CA and
a client certificate, and unix sockets work the same everywhere. The client fails fast:
redis-py's defaults (5 s timeouts, retries with backoff) would let one command against a
dead Redis block the consumer loop for about a minute; retrying is the feature cache's
decision, within its batch's time budget.

A wrong password and an outage call for different reactions (exit naming authentication at
start-up, count separately at run time), so failures are classified: ``auth`` (wrong or
missing password or user, no permission), ``tls`` (handshake refused either way: CA, client
certificate), ``outage`` (everything else: refused, timed out, closed).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from streamer.errors import ConfigError, DependencyError
from streamer.features.redis_cluster import LazyCluster, is_cluster, where_cluster

ErrorKind = Literal["auth", "tls", "outage"]
RedisMode = Literal["single", "cluster", "sentinel"]
REDIS_ERRORS = (redis.RedisError, OSError, RedisClusterException)
_AUTH_REPLIES = ("WRONGPASS", "NOAUTH", "NOPERM", "invalid username-password pair")
_TLS_SETTINGS = {
    "ssl_ca_certs": "STREAMER_REDIS_SSL_CA_CERTS",
    "ssl_certfile": "STREAMER_REDIS_SSL_CERTFILE",
    "ssl_keyfile": "STREAMER_REDIS_SSL_KEYFILE",
}


class RedisCredentialsError(DependencyError):
    """Redis refused our credentials (password, user, client certificate) or we refused its
    certificate: a setting to fix, not an outage to wait out (exit code 3)."""


def make_redis_client(
    url: str,
    *,
    password: str | None,
    timeout_ms: float,
    ssl_ca_certs: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    username: str | None = None,
    mode: RedisMode = "single",
    sentinels: Sequence[tuple[str, int]] = (),
    service: str = "",
) -> redis.Redis:
    """A client for ``redis://``, ``rediss://`` (TLS) or ``unix://`` that fails in
    ``timeout_ms``; connects lazily, so a Redis that is down at start-up is not an error here.

    ``mode="cluster"``: a Redis Cluster found through the URL's node (``redis_cluster``); it
    stands in for ``redis.Redis`` (the commands streamer sends have the same names, and the
    multi-key ones go through ``mget_of`` / ``velocity_store`` / ``loader`` /
    ``monitor.state``, which group keys by slot or hash tag on a cluster).
    ``mode="sentinel"``: the primary of ``service`` as the ``sentinels`` name it, looked up
    again on every new connection, so a failover is followed (the URL then gives only the
    database, TLS and credentials).
    """
    if timeout_ms <= 0:
        raise ConfigError(f"STREAMER_REDIS_TIMEOUT_MS must be > 0, got {timeout_ms}")
    given = {"ssl_ca_certs": ssl_ca_certs, "ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}
    tls = {k: v for k, v in given.items() if v}
    _check_tls(url, tls)
    timeout = timeout_ms / 1000.0
    kwargs: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "health_check_interval": 0,
        # A small pool connects lazily (single_connection_client would connect eagerly).
        "max_connections": 4,
        **tls,
    }
    if password:
        kwargs["password"] = password
    if username:
        kwargs["username"] = username
    if mode == "cluster":
        return _cluster_client(url, kwargs)
    if mode == "sentinel":
        return _sentinel_client(url, kwargs, sentinels, service)
    return redis.Redis.from_url(url, **kwargs)


def _cluster_client(url: str, kwargs: dict[str, Any]) -> redis.Redis:
    """A lazily built ``RedisCluster``: one retry (no backoff) at the cluster level, so a
    command that met MOVED after a failover goes again once to the new primary."""
    if url.lower().startswith("unix://"):
        raise ConfigError("STREAMER_REDIS_MODE=cluster needs a redis:// or rediss:// URL")
    del kwargs["retry"], kwargs["retry_on_timeout"]
    kwargs |= {"retry": Retry(NoBackoff(), 1), "topology_refresh_min_interval": 0.1}
    return cast(redis.Redis, LazyCluster(url, kwargs))


def _sentinel_client(
    url: str, kwargs: dict[str, Any], sentinels: Sequence[tuple[str, int]], service: str
) -> redis.Redis:
    if not sentinels or not service:
        raise ConfigError(
            "STREAMER_REDIS_MODE=sentinel needs STREAMER_REDIS_SENTINELS (host:port,...) "
            "and STREAMER_REDIS_SENTINEL_SERVICE"
        )
    parse: Any = redis.connection.parse_url
    options: dict[str, Any] = parse(url)
    options.pop("host", None), options.pop("port", None), options.pop("path", None)
    timeouts = {k: kwargs[k] for k in ("socket_timeout", "socket_connect_timeout")}
    sentinel = Sentinel(list(sentinels), sentinel_kwargs=timeouts, **timeouts)
    if options.pop("connection_class", None) is redis.SSLConnection:
        raise ConfigError("STREAMER_REDIS_MODE=sentinel: TLS (rediss://) is not supported yet")
    kwargs["connection_class"] = _FollowingConnection
    client: redis.Redis = sentinel.master_for(service, **{**options, **kwargs})
    return client


class _FollowingConnection(SentinelManagedConnection):
    """A Sentinel-managed connection that asks the Sentinels for the primary every time it
    connects. redis-py 8.2's ``send_packed_command`` reconnects a closed connection to the
    address it last had, bypassing ``SentinelManagedConnection.connect`` (the lookup): a
    connection closed by a failover would knock on the dead primary for ever."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()  # type: ignore[no-untyped-call]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def parse_sentinels(text: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (``STREAMER_REDIS_SENTINELS``) as pairs; one clear error."""
    pairs: list[tuple[str, int]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"STREAMER_REDIS_SENTINELS: {item!r} is not host:port")
        pairs.append((host, int(port)))
    return pairs


def attempt_timeout(client: Any) -> float:
    """A client's socket timeout in seconds (0 when it has none): one round trip's limit."""
    if isinstance(client, LazyCluster):
        return client.socket_timeout
    pool = getattr(client, "connection_pool", None)
    return float(pool.connection_kwargs.get("socket_timeout") or 0) if pool else 0.0


def _check_tls(url: str, tls: dict[str, str]) -> None:
    """TLS files only make sense with rediss://, and must be readable files."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("STREAMER_REDIS_URL must start with redis://, rediss:// (TLS) or unix://")
    if tls and scheme != "rediss":
        names = ", ".join(_TLS_SETTINGS[k] for k in tls)
        raise ConfigError(f"{names} set but STREAMER_REDIS_URL is not rediss://: use rediss://")
    if "ssl_keyfile" in tls and "ssl_certfile" not in tls:
        raise ConfigError("STREAMER_REDIS_SSL_KEYFILE needs STREAMER_REDIS_SSL_CERTFILE")
    for key, value in tls.items():
        if not Path(value).is_file() or not os.access(value, os.R_OK):
            raise ConfigError(f"{_TLS_SETTINGS[key]}: {value} is not a readable file")


def classify(exc: BaseException) -> ErrorKind:
    """``auth``, ``tls`` or ``outage`` for an exception raised by a Redis command."""
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        return "auth"
    if isinstance(exc, redis.ResponseError) and str(exc).startswith(_AUTH_REPLIES):
        return "auth"
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return "tls"
        seen = seen.__cause__ or seen.__context__
    return "outage"


def where(client: redis.Redis) -> str:
    """The server a client talks to, without credentials (for error lines)."""
    if is_cluster(client):
        return where_cluster(client)
    pool = client.connection_pool
    if hasattr(pool, "service_name"):
        return f"Redis Sentinel service {pool.service_name}"
    kw = pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}"
    scheme = "rediss" if client.connection_pool.connection_class is redis.SSLConnection else "redis"
    return f"{scheme}://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def check_redis(client: redis.Redis) -> None:
    """Raise unless Redis answers a PING: ``RedisCredentialsError`` ("authentication failed",
    "TLS handshake failed") when it refuses us, ``DependencyError`` ("unreachable") otherwise.
    One line; never the password."""
    try:
        client.ping()
    except REDIS_ERRORS as exc:
        kind, detail = classify(exc), _detail(exc)
        if kind == "auth":
            raise RedisCredentialsError(
                f"Redis at {where(client)}: authentication failed ({detail}); check "
                "STREAMER_REDIS_PASSWORD and STREAMER_REDIS_USERNAME"
            ) from None
        if kind == "tls":
            raise RedisCredentialsError(
                f"Redis at {where(client)}: TLS handshake failed ({detail}); check "
                + ", ".join(_TLS_SETTINGS.values())
            ) from None
        raise DependencyError(
            f"Redis at {where(client)}: unreachable ({detail}); start it or fix STREAMER_REDIS_URL"
        ) from None


def reachable(client: redis.Redis) -> bool:
    """True when ``client``'s Redis answers a PING now."""
    try:
        return bool(client.ping())
    except REDIS_ERRORS:
        return False


def _detail(exc: BaseException) -> str:
    """The error's class and first line (server replies never echo the password)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
