"""Where card velocity states live: Redis for the stream, a dict for offline work.

Reading is the feature cache's business (the states' keys join its one MGET per batch;
``velocity_key`` names them and ``velocity.fold`` reads the bytes). Writing is here: one
round trip per batch, one compare-and-set script call over the batch's cards, so that a
stale instance (during a rebalance handover, or after a rewind) can never move a card's
state backwards. On a Redis Cluster the batch's cards are grouped by slot, one script call
per slot, grouped by node (``redis_cluster.eval_per_node``): one round trip per node.

The round trip is split in two (``send_states``, then ``PendingWrite.result``): the stream
sends a batch's states as soon as the fold has made them and reads the replies once the
batch is scored, so Redis runs the script on its own core while this process scores and
explains the batch, instead of this process waiting for it.

Keys are ``{prefix}vel:v1:{<card id>}``: the card id is the key's hash tag, so a card's
key sits in its own slot. Redis Cluster takes the tag from the first ``{`` to the first
``}`` after it: a card id containing ``}`` is tagged by its part before the ``}`` (cards
sharing that part share a slot, which changes placement, never correctness), and a key
prefix must not contain ``{`` (the tag would then come from the prefix, putting every
card in one slot).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis
from redis.exceptions import NoScriptError

from streamer.features.held_connection import HeldConnection, read_reply
from streamer.features.redis_client import REDIS_ERRORS, ErrorKind, classify
from streamer.features.redis_cluster import (
    cluster_mget,
    is_cluster,
    send_eval_per_node,
    slot_groups,
)
from streamer.features.resp import Blobs, Keys, pack
from streamer.features.velocity_state import (
    HEADER_SIZE,
    HIGH_OFFSET,
    LOG_ENTRY_SIZE,
    TILE_SIZE,
    VERSION,
    stored_high,
)

STATE_VERSION = "v1"
"""Part of every velocity key: a new state encoding gets new keys, so versions never mix."""
TTL_S = 32 * 86_400
"""How long a card's state outlives its last write: the 30-day windows plus two days."""

# One script call for a batch: KEYS are the cards' keys, ARGV[1] the TTL in milliseconds,
# ARGV[1 + i] the new state of KEYS[i]; returns 1 (written) or 0 (kept) per key. A stored
# state is kept when it is a well-formed state of the same version whose high_position (u64
# little-endian at HIGH_OFFSET) is not lower than the new one's, compared byte by byte from
# the most significant end: exact for every u64, with no Lua number (a double) involved;
# anything else under the key is overwritten. One call instead of one per card: Redis pays
# its script set-up once (~6-10 µs an EVALSHA, ~1 µs a GET or SET inside one). Redis
# Cluster refuses a script whose keys lie in different slots: there it is one call per slot.
CAS_MANY_SCRIPT = f"""
local function newer(old, new)
  if not old or string.byte(old, 1) ~= {VERSION} or string.len(old) < {HEADER_SIZE} then
    return true
  end
  local n = string.byte(old, 28) + 256 * string.byte(old, 29)
  local m = string.byte(old, 30) + 256 * string.byte(old, 31)
  if string.len(old) ~= {HEADER_SIZE} + n * {LOG_ENTRY_SIZE} + m * {TILE_SIZE} then
    return true
  end
  for i = {HIGH_OFFSET + 8}, {HIGH_OFFSET + 1}, -1 do
    local a, b = string.byte(old, i), string.byte(new, i)
    if a > b then return false end
    if a < b then return true end
  end
  return false
end
local out = {{}}
for i, key in ipairs(KEYS) do
  local new = ARGV[i + 1]
  if newer(redis.call('GET', key), new) then
    redis.call('SET', key, new, 'PX', ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
CAS_MANY_SHA = hashlib.sha1(CAS_MANY_SCRIPT.encode()).hexdigest()
"""The script's id for EVALSHA, computed here: no SCRIPT LOAD round trip."""
_HIGH = struct.Struct("<Q")  # a state's high (position + 1) at HIGH_OFFSET


def velocity_key(prefix: str, card_id: str) -> str:
    """Redis key of a card's velocity state, hash-tagged by the card id (module doc)."""
    return f"{prefix}vel:{STATE_VERSION}:{{{card_id}}}"


def velocity_keys(prefix: str, card_ids: Sequence[str]) -> Keys:
    """``velocity_key`` of each card, for a packed command (``resp``: no string per key)."""
    return Keys(f"{prefix}vel:{STATE_VERSION}:{{", card_ids, "}")


@dataclass(frozen=True)
class WriteResult:
    """What one batch's write did: states ``written``, ``stale`` ones the store refused
    (it already held a state at or past their position), and ``failed`` ones that did
    not reach Redis (``error`` then says why: ``auth``, ``tls`` or ``outage``)."""

    written: int = 0
    stale: int = 0
    failed: int = 0
    error: ErrorKind | None = None


def write_states(
    client: redis.Redis,
    prefix: str,
    updates: Mapping[str, bytes],
    positions: Mapping[str, int],
    ttl_s: int = TTL_S,
    held: HeldConnection | None = None,
) -> WriteResult:
    """Compare-and-set every updated card state in one round trip (one script call):
    ``send_states`` and its result at once."""
    return send_states(client, prefix, updates, positions, ttl_s, held).result()


class PendingWrite:
    """A batch's compare-and-set write, sent, its replies not read yet: Redis runs it while
    the caller goes on. ``result`` reads them (once; it holds a connection until then, so
    call it before the next write or read of the same cards)."""

    def __init__(self, replies: Callable[[], list[Any]] | WriteResult, count: int) -> None:
        self._replies, self._count = replies, count

    def result(self) -> WriteResult:
        """What the write did; a Redis problem is classified into it, never raised."""
        if isinstance(self._replies, WriteResult):
            return self._replies
        read, self._replies = self._replies, WriteResult(failed=self._count, error="outage")
        try:
            self._replies = _tally(read())
        except REDIS_ERRORS as exc:
            self._replies = WriteResult(failed=self._count, error=classify(exc))
        return self._replies


def _tally(replies: list[Any]) -> WriteResult:
    """A write's result from its replies: 1 written, 0 stale, an exception failed (counted
    by ``list.count``: no Python code per reply unless some failed)."""
    written, stale = replies.count(1), replies.count(0)
    if written + stale == len(replies):
        return WriteResult(written, stale)
    errors = [r for r in replies if isinstance(r, Exception)]
    return WriteResult(written, stale, len(errors), classify(errors[0]) if errors else None)


def send_states(
    client: redis.Redis,
    prefix: str,
    updates: Mapping[str, bytes],
    positions: Mapping[str, int],
    ttl_s: int = TTL_S,
    held: HeldConnection | None = None,
) -> PendingWrite:
    """Send the compare-and-set of every updated card state (one script call); the replies
    are read by the returned write's ``result``. On one node it goes on ``held`` (the
    feature cache's own connection) when given, else on one from the client's pool.

    Each state is written (with a TTL of ``ttl_s``) only if the stored one is older, by
    ``high_position``. The script is sent by its SHA1; after a Redis restart or SCRIPT
    FLUSH Redis answers NOSCRIPT and the call goes again, once, as EVAL (a second round
    trip, which also caches the script). Never raises for a Redis problem: it is classified
    into the result, and the caller counts it. ``positions`` is checked against the
    bytes (a mismatch is a caller bug and raises ``ValueError``).
    """
    if not updates:
        return PendingWrite(WriteResult(), 0)
    cards, blobs = list(updates), list(updates.values())
    for card, blob in zip(cards, blobs, strict=True):
        stated = positions[card] + 1  # states keep positions plus one
        if len(blob) < HEADER_SIZE or _HIGH.unpack_from(blob, HIGH_OFFSET)[0] != stated:
            raise ValueError(f"state of card {card!r} does not hold position {positions[card]}")
    ttl_ms = str(int(ttl_s * 1000))
    try:
        if is_cluster(client):
            keys = [velocity_key(prefix, card) for card in cards]
            replies = _per_slot_calls(client, keys, blobs, ttl_ms)
        else:
            send = held.send if held is not None else partial(_send, client)
            replies = _one_call(send, velocity_keys(prefix, cards), blobs, ttl_ms)
    except REDIS_ERRORS as exc:
        return PendingWrite(WriteResult(failed=len(cards), error=classify(exc)), len(cards))
    return PendingWrite(replies, len(cards))


def _one_call(
    send: Callable[[bytes], Callable[[], Any]], keys: Keys, blobs: list[bytes], ttl_ms: str
) -> Callable[[], list[Any]]:
    """One script call for the whole batch (one Redis node), packed in one buffer
    (``resp``) and sent by ``send``; the reader of its replies, one per key (NOSCRIPT:
    once more as EVAL, a round trip then)."""
    args = (len(keys.ids), keys, ttl_ms, Blobs(blobs))
    read = send(pack("EVALSHA", CAS_MANY_SHA, *args))

    def replies() -> list[Any]:
        reply = read()
        if isinstance(reply, NoScriptError):
            reply = send(pack("EVAL", CAS_MANY_SCRIPT, *args))()
        if isinstance(reply, Exception):
            return [reply] * len(keys.ids)
        return list(reply)

    return replies


def _per_slot_calls(
    client: Any, keys: list[str], blobs: list[bytes], ttl_ms: str
) -> Callable[[], list[Any]]:
    """A cluster's write, sent: one script call per slot, a round trip per node
    (``send_eval_per_node``); the reader of its replies, one per key."""
    groups = slot_groups(client, keys)
    calls = [([keys[i] for i in g], [ttl_ms, *(blobs[i] for i in g)]) for g in groups]
    read = send_eval_per_node(client, CAS_MANY_SCRIPT, CAS_MANY_SHA, calls)

    def replies() -> list[Any]:
        out: list[Any] = [None] * len(keys)
        for group, reply in zip(groups, read(), strict=True):
            for j, i in enumerate(group):
                out[i] = reply if isinstance(reply, Exception) else reply[j]
        return out

    return replies


def _send(client: redis.Redis, command: bytes) -> Callable[[], Any]:
    """Send a packed ``command`` in one write on one pooled connection (through redis-py's
    connection, so TLS and AUTH are the pool's); the returned reader reads the reply (an
    error reply comes back as an exception value, not raised) and gives the connection
    back. A connection or timeout failure, sending or reading, closes the connection and
    raises."""
    pool = client.connection_pool
    conn: Any = pool.get_connection()
    try:
        conn.send_packed_command([command])
    except BaseException:
        conn.disconnect()
        pool.release(conn)
        raise

    def read() -> Any:
        try:
            return read_reply(conn)
        finally:
            pool.release(conn)

    return read


class MemoryVelocityStore:
    """Velocity states in a dict, with the Redis store's compare-and-set semantics: for
    ``score-file`` and ``features build``, which fold a file in one process."""

    def __init__(self) -> None:
        self.states: dict[str, bytes] = {}

    def read(self, card_ids: Sequence[str]) -> list[bytes | None]:
        """Each card's stored state, None when there is none."""
        return [self.states.get(card) for card in card_ids]

    def write(self, updates: Mapping[str, bytes], positions: Mapping[str, int]) -> WriteResult:
        """Keep each new state whose position is above the stored one's."""
        written = stale = 0
        for card, blob in updates.items():
            stored = stored_high(self.states.get(card))
            if stored is None or positions[card] > stored:
                self.states[card] = blob
                written += 1
            else:
                stale += 1
        return WriteResult(written, stale)


class RedisVelocityStore:
    """Velocity states in Redis behind the same two calls as ``MemoryVelocityStore``, for
    the tools that seed or inspect states outside the stream (the stream's read rides the
    feature cache's MGET). ``read`` raises the client's errors; ``write`` never does."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_s: int = TTL_S) -> None:
        self._client, self._prefix, self._ttl_s = client, prefix, ttl_s

    def read(self, card_ids: Sequence[str]) -> list[bytes | None]:
        """Each card's stored state (one MGET), None when there is none."""
        if not card_ids:
            return []
        keys = [velocity_key(self._prefix, card) for card in card_ids]
        if is_cluster(self._client):
            return cluster_mget(self._client)(keys)
        values: list[Any] = self._client.mget(keys)
        return values

    def write(self, updates: Mapping[str, bytes], positions: Mapping[str, int]) -> WriteResult:
        """``write_states`` with this store's prefix and TTL."""
        return write_states(self._client, self._prefix, updates, positions, self._ttl_s)
