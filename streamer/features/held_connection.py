"""The feature cache's own Redis connection: its MGET and its velocity write take turns on
one connection taken from the client's pool and kept.

redis-py's own call path (pool checkout and release, retry wrapper, event hooks) costs
~60 µs of CPU a call on redis-py 8.1, more than the command itself (~40 µs), and the
scoring API pays it per request; a pool checkout and release alone costs 5-25 µs (its
observability hooks and a poll of the socket), paid by every velocity write. Commands
come packed (``resp.pack``: no Python code per key) and go through redis-py's connection,
so TLS and AUTH are the pool's, and a Sentinel's connection follows a failover.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis

from streamer.features.redis_cluster import cluster_mget, is_cluster
from streamer.features.resp import Keys, pack

__all__ = ["HeldConnection", "MGet", "hold", "mget_of", "read_reply"]


class HeldConnection:
    """One connection from a client's pool, kept by its one caller.

    One command in flight at most: a command sent while an earlier reply is still unread
    drops the connection first, so that reply can never answer the later command (its
    reader then raises ``ConnectionError``). A failure, sending or reading, closes the
    connection and raises as the client would; the next command connects again.
    Not thread-safe: one feature cache, one scoring thread.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._conn: Any = None
        self._sent = 0
        self._unread = 0  # the number of the command whose reply is unread (0: none)

    def send(self, command: bytes) -> Callable[[], Any]:
        """Send a packed ``command``; the returned reader (call it once) reads its reply,
        an error reply as an exception value (not raised)."""
        conn = self._conn
        if conn is not None and self._unread:
            conn.disconnect()  # the unread reply goes with it
        if conn is None:  # the pool connects it (and raises when Redis is down)
            conn = self._conn = self._pool.get_connection()
        self._sent += 1
        number = self._unread = self._sent
        try:
            conn.send_packed_command([command])
        except BaseException:
            self._unread = 0
            conn.disconnect()
            raise

        def read() -> Any:
            if self._unread != number:
                raise redis.ConnectionError("reply dropped: a later command went first")
            self._unread = 0
            return read_reply(conn)

        return read

    def mget(
        self, keys: Sequence[Keys], meanwhile: Callable[[], object] | None = None
    ) -> list[bytes | None]:
        """The values of the keys of ``keys``, in order (an error reply closes the
        connection and raises). ``meanwhile`` runs once the MGET is sent, before its reply
        is read: Redis answers while it runs. It must not use this connection (its reply
        would be dropped), and if it raises the reply is left unread."""
        read = self.send(pack("MGET", *keys))
        if meanwhile is not None:
            meanwhile()
        reply = read()
        if isinstance(reply, Exception):
            self._conn.disconnect()
            raise reply
        values: list[bytes | None] = reply
        return values


def read_reply(conn: Any) -> Any:
    """The next reply on a redis-py connection, an error reply as an exception value (not
    raised); a failure closes the connection and raises."""
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return exc
    except BaseException:
        conn.disconnect()
        raise


def hold(client: Any) -> HeldConnection | None:
    """A held connection of a redis-py client; None for a cluster (a connection per node,
    from the library's pools) or a stand-in (``streamer.testing.InMemoryRedis``)."""
    if not is_cluster(client) and isinstance(client, redis.Redis):
        return HeldConnection(client)
    return None


MGet = Callable[[Sequence[Keys], Callable[[], object] | None], list[bytes | None]]
"""An MGET of the keys of some ``resp.Keys``, values in their order; the callable runs
while the reply is awaited when the read can be split (``HeldConnection.mget``), else
not at all (the caller then runs it itself)."""


def mget_of(client: Any, held: HeldConnection | None = None) -> MGet:
    """The feature cache's MGET: on ``held`` (or a connection held for it) for a redis-py
    client, one MGET per slot pipelined per node for a cluster, else the client's own
    ``mget`` (stand-ins)."""
    held = held or hold(client)
    if held is not None:
        return held.mget
    by_keys = cluster_mget(client) if is_cluster(client) else client.mget

    def mget(
        keys: Sequence[Keys], meanwhile: Callable[[], object] | None = None
    ) -> list[bytes | None]:
        values: list[bytes | None] = by_keys([key for group in keys for key in group.strings()])
        return values

    return mget
