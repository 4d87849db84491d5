"""Redis Cluster for the feature cache: redis-py's ``RedisCluster``, built on first use.

Redis Cluster refuses any multi-key command (MGET, MSET, a script) whose keys lie in more
than one slot, so the stream's one MGET and one script call per batch become one command
per slot, sent through redis-py's cluster pipeline: it routes each command by its slot
(the library keeps the slot map, follows MOVED and ASK, refreshes the map after a
failover) and writes every node's commands before it reads any reply, so a batch costs
one round trip per node touched, the nodes working in parallel. The slot routing is the
library's; nothing here computes a slot.

``RedisCluster`` connects to its startup node in its constructor (to learn the slot map);
``LazyCluster`` defers that to the first command, so that a cluster that is down at
start-up is an outage the feature cache degrades through (as it is for one node), not a
crash in the client factory.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException


class LazyCluster:
    """A ``RedisCluster`` for ``url``, built (and connected) by the first command.

    Attribute access goes to the built client, so callers use it as a ``RedisCluster``.
    A failed build raises a ``redis.ConnectionError`` (or the ``AuthenticationError`` /
    ``ssl.SSLError`` behind it) and is tried again by the next command.
    """

    def __init__(self, url: str, kwargs: dict[str, Any]) -> None:
        self.url = url
        self.socket_timeout: float = float(kwargs.get("socket_timeout") or 0)
        self._kwargs = kwargs
        self._client: RedisCluster | None = None

    def cluster(self) -> RedisCluster:
        """The built client (building it now if needed)."""
        if self._client is None:
            try:
                self._client = RedisCluster.from_url(self.url, **self._kwargs)
            except (RedisClusterException, redis.RedisError, OSError) as exc:
                raise _reason(exc) from None
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster(), name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _reason(exc: BaseException) -> BaseException:
    """What a failed build should raise: the credentials or TLS error behind it, if any,
    so that ``classify`` tells them from an outage; else a ``ConnectionError``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, redis.AuthenticationError | ssl.SSLError):
            return seen
        if isinstance(seen, redis.ResponseError) and "WRONGPASS" in str(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return redis.ConnectionError(f"Redis Cluster unreachable: {type(exc).__name__}: {exc}")


def is_cluster(client: object) -> bool:
    """True for a Redis Cluster client (built or not)."""
    return isinstance(client, LazyCluster | RedisCluster)


def _cluster(client: Any) -> Any:
    """The ``RedisCluster`` (untyped in redis-py: ``Any``)."""
    return client.cluster() if isinstance(client, LazyCluster) else client


def cluster_mget(client: Any) -> Callable[[Sequence[str]], list[bytes | None]]:
    """The feature cache's MGET on a cluster: one MGET per slot, pipelined per node
    (redis-py's ``mget_nonatomic``); values in the order of the keys."""

    def mget(keys: Sequence[str]) -> list[bytes | None]:
        values: list[bytes | None] = _cluster(client).mget_nonatomic(list(keys))
        return values

    return mget


def per_slot(client: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Each command (each one's keys in one slot) through one cluster pipeline: one round
    trip per node. Error replies come back as exception values; a node that cannot be
    reached raises."""
    pipe = _cluster(client).pipeline()
    for command in commands:
        pipe.execute_command(*command)
    replies: list[Any] = pipe.execute(raise_on_error=False)
    return replies


def slot_groups(client: Any, keys: Sequence[str]) -> list[list[int]]:
    """The positions of ``keys`` grouped by slot (the library's ``keyslot``), first seen
    first: each group may go in one multi-key command."""
    cluster = _cluster(client)
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(cluster.keyslot(key), []).append(i)
    return list(groups.values())


def where_cluster(client: Any) -> str:
    """The startup node of a cluster client, without credentials (for error lines)."""
    url = client.url if isinstance(client, LazyCluster) else "redis://?"
    scheme, _, rest = url.partition("://")
    host = rest.rsplit("@", 1)[-1].split("/", 1)[0]
    return f"Redis Cluster via {scheme}://{host}"
