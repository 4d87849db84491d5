"""The join state in Redis: what was served, what was learned later, and the two joined.

Keys on one node (``P`` = ``STREAMER_REDIS_KEY_PREFIX`` + ``mon:``; ``<id>`` = a UUID's 16
bytes, or ``t`` + the id's text for ids that are not canonical UUIDs; on a Redis Cluster
each name carries the hash tag of its shard, ``keys.KeyLayout``):

``P s:<id>``     the packed scored event (``records.SCORED``), TTL the label horizon
``P f:<id>``     the logged model inputs of that event, when the stream logged them
``P l:<id>``     the first label of the transaction (``records.LABEL``), same TTL
``P j:<hour>``   hash, transaction id -> joined event, per event-time hour
``P c:<hour>``   hash, model version id -> scored events of that event-time hour
``P i:<ns>``     interned names (model versions, label sources, feature sets)

Every write is idempotent, so restarts, replays and duplicate labels count nothing twice:
the scored event and the label are each set once (``SET NX``: the first served score and
the first label win); the joined record is a hash field keyed by transaction id, written
from those stored values (rewriting it writes the same bytes); the scored count of an hour
is incremented in the same Lua script as the ``SET NX`` that makes the event new. Whoever
comes second (the label or the score) finds the other and writes the join, whichever order
they arrive in, also across two monitor processes (each sets its own key, then reads the
other's). Hour buckets expire a label horizon after the hour ends. A batch costs one script
call per shard touched (one on a single node), sent one round trip per node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis

from streamer.features.redis_cluster import cluster_hgetall, eval_per_node, is_cluster, on_nodes
from streamer.monitor.interner import Interner
from streamer.monitor.keys import CLUSTER_SHARDS, KeyLayout
from streamer.monitor.records import HOUR_MS, event_hour

_SCORED_SCRIPT = """
local ttl = ARGV[1]
local out = {}
for i = 0, (#KEYS / 5) - 1 do
  local s, l, c, j, f = KEYS[5*i+1], KEYS[5*i+2], KEYS[5*i+3], KEYS[5*i+4], KEYS[5*i+5]
  local packed, version, expire_at = ARGV[5*i+2], ARGV[5*i+3], ARGV[5*i+4]
  local txn, features = ARGV[5*i+5], ARGV[5*i+6]
  local new = redis.call('SET', s, packed, 'NX', 'PX', ttl)
  if new then
    redis.call('HINCRBY', c, version, 1)
    redis.call('PEXPIREAT', c, expire_at)
    if features ~= '' then redis.call('SET', f, features, 'NX', 'PX', ttl) end
  else
    packed = redis.call('GET', s)
  end
  local label = redis.call('GET', l)
  if label then
    redis.call('HSET', j, txn, packed .. label)
    redis.call('PEXPIREAT', j, expire_at)
    out[i+1] = new and 3 or 2
  else
    out[i+1] = new and 1 or 0
  end
end
return out
"""
# Per label: {1 if it is the first label of its transaction else 0, stored label, scored or ''}
_LABEL_SCRIPT = """
local ttl = ARGV[1]
local out = {}
for i = 0, (#KEYS / 2) - 1 do
  local l, s = KEYS[2*i+1], KEYS[2*i+2]
  local new = redis.call('SET', l, ARGV[i+2], 'NX', 'PX', ttl)
  local label = ARGV[i+2]
  if not new then label = redis.call('GET', l) end
  out[i+1] = {new and 1 or 0, label, redis.call('GET', s) or ''}
end
return out
"""
_SCAN_COUNT = 5000
_HOURS_A_TRIP = 24


@dataclass(frozen=True, slots=True)
class ScoredWrite:
    """One scored event to keep: its id, packed bytes, version id and packed features."""

    transaction_id: str
    packed: bytes
    hour: int
    version_id: int
    features: bytes = b""


@dataclass(frozen=True, slots=True)
class LabelWrite:
    """One label to keep: its transaction id and packed bytes."""

    transaction_id: str
    packed: bytes


@dataclass(frozen=True, slots=True)
class Applied:
    """What a batch did: new scored events or labels, joins, and duplicates (replays)."""

    new: int = 0
    joined: int = 0
    pending: int = 0
    duplicate: int = 0


Call = tuple[list[bytes | str], list[bytes | str | int]]


class JoinState:
    """Scored events and labels joined in Redis (see the module docstring for the keys).

    On a Redis Cluster client the keys are spread over ``CLUSTER_SHARDS`` hash tags and
    each batch's script runs once per shard (``redis_cluster.eval_per_node``); on one node
    there is one shard and one script call per batch."""

    def __init__(self, client: Redis, key_prefix: str, horizon_ms: int) -> None:
        self._cluster = is_cluster(client)
        self.keys = KeyLayout(f"{key_prefix}mon:", CLUSTER_SHARDS if self._cluster else 1)
        self._client = client
        self._horizon_ms = horizon_ms
        self.interner = Interner(client, self.keys)
        scripts = () if self._cluster else (_SCORED_SCRIPT, _LABEL_SCRIPT)
        self._scripts = {script: client.register_script(script) for script in scripts}

    def _expire_at(self, hour: int) -> int:
        return (hour + 1) * HOUR_MS + self._horizon_ms

    def _by_shard(self, transaction_ids: Iterable[str]) -> list[list[int]]:
        """Positions grouped by shard, first seen first: one script call each."""
        groups: dict[int, list[int]] = {}
        for i, transaction_id in enumerate(transaction_ids):
            groups.setdefault(self.keys.shard(transaction_id), []).append(i)
        return list(groups.values())

    def _run(self, script: str, calls: list[Call]) -> list[Any]:
        """Each call's replies; a Redis failure raises (the loop retries the batch)."""
        if self._cluster:
            sha = hashlib.sha1(script.encode()).hexdigest()
            replies = eval_per_node(self._client, script, sha, calls)
        else:
            runner = self._scripts[script]
            replies = [runner(keys=keys, args=args) for keys, args in calls]
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def add_scored(self, writes: Sequence[ScoredWrite]) -> Applied:
        """Keep scored events (the first served wins) and join those already labelled."""
        if not writes:
            return Applied()
        calls: list[Call] = []
        for group in self._by_shard(w.transaction_id for w in writes):
            shard = self.keys.shard(writes[group[0]].transaction_id)
            keys: list[bytes | str] = []
            args: list[bytes | str | int] = [self._horizon_ms]
            for w in (writes[i] for i in group):
                keys += [
                    self.keys.event("s", w.transaction_id),
                    self.keys.event("l", w.transaction_id),
                ]
                keys += [self.keys.hour("c", w.hour, shard), self.keys.hour("j", w.hour, shard)]
                keys.append(self.keys.event("f", w.transaction_id))
                args += [
                    w.packed,
                    w.version_id,
                    self._expire_at(w.hour),
                    w.transaction_id,
                    w.features,
                ]
            calls.append((keys, args))
        codes = [int(c) for reply in self._run(_SCORED_SCRIPT, calls) for c in reply]
        return Applied(
            new=sum(c & 1 for c in codes),
            joined=sum(c == 3 for c in codes),
            pending=sum(c == 1 for c in codes),
            duplicate=sum(not c & 1 for c in codes),
        )

    def add_labels(self, writes: Sequence[LabelWrite]) -> Applied:
        """Keep labels (the first per transaction wins) and join those already scored; a
        label whose score has not arrived stays pending until it does."""
        if not writes:
            return Applied()
        groups = self._by_shard(w.transaction_id for w in writes)
        calls: list[Call] = []
        for group in groups:
            keys: list[bytes | str] = []
            for w in (writes[i] for i in group):
                keys += [
                    self.keys.event("l", w.transaction_id),
                    self.keys.event("s", w.transaction_id),
                ]
            calls.append((keys, [self._horizon_ms, *(writes[i].packed for i in group)]))
        join_keys: list[str] = []
        commands: list[tuple[Any, ...]] = []
        new = joined = 0
        for group, replies in zip(groups, self._run(_LABEL_SCRIPT, calls), strict=True):
            for i, (is_new, label, scored) in zip(group, replies, strict=True):
                new += int(is_new)
                if scored:  # replays re-write the same bytes: a hash field per transaction
                    hour, w = event_hour(scored), writes[i]
                    key = self.keys.hour("j", hour, self.keys.shard(w.transaction_id))
                    join_keys += [key, key]
                    commands += [
                        ("HSET", key, w.transaction_id, scored + label),
                        ("PEXPIREAT", key, self._expire_at(hour)),
                    ]
                    joined += int(is_new)
        self._send(join_keys, commands)
        return Applied(new=new, joined=joined, pending=new - joined, duplicate=len(writes) - new)

    def _send(self, keys: list[str], commands: list[tuple[Any, ...]]) -> None:
        """Commands whose replies say nothing: one round trip (per node on a cluster,
        ``on_nodes``); a failure raises."""
        if self._cluster:
            replies = on_nodes(self._client, keys, commands)
        else:
            pipe: Any = self._client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    def joined(self, hours: Iterable[int]) -> Iterator[tuple[str, bytes]]:
        """(transaction id, joined bytes) of every joined event in those event-time hours:
        a day's hashes (every shard's) read together, one round trip per node (a page, on
        one node, where an hour's one hash may be large)."""
        hours = list(hours)
        for start in range(0, len(hours), _HOURS_A_TRIP):
            day = hours[start : start + _HOURS_A_TRIP]
            keys = [k for hour in day for k in self.keys.hours("j", hour)]
            if self._cluster:  # 64 small hashes an hour: each read whole
                hashes = cluster_hgetall(self._client, keys)
                fields = {f: v for fields in hashes for f, v in fields.items()}
                yield from ((f.decode(), v) for f, v in fields.items())
            else:
                yield from self._scan(keys)

    def _scan(self, keys: list[str]) -> Iterator[tuple[str, bytes]]:
        cursors = dict.fromkeys(keys, 0)
        seen: dict[bytes | str, bytes] = {}  # HSCAN may return a field twice
        while cursors:
            pipe = self._client.pipeline(transaction=False)
            for key, cursor in cursors.items():
                pipe.hscan(key, cursor, count=_SCAN_COUNT)
            pages = pipe.execute()
            for _cursor, fields in pages:
                seen.update(fields)
            cursors = {k: c for k, (c, _) in zip(cursors, pages, strict=True) if c}
        for field, value in seen.items():
            yield (field.decode() if isinstance(field, bytes) else field), value

    def scored_counts(self, hours: Iterable[int]) -> dict[int, int]:
        """Scored events per model version id over those event-time hours."""
        keys = [key for hour in hours for key in self.keys.hours("c", hour)]
        if self._cluster:
            hashes: list[Any] = cluster_hgetall(self._client, keys)
        else:
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            hashes = pipe.execute()
        totals: dict[int, int] = {}
        for counts in hashes:
            for version, n in counts.items():
                totals[int(version)] = totals.get(int(version), 0) + int(n)
        return totals

    def features(self, transaction_ids: Sequence[str]) -> list[bytes | None]:
        """The logged model inputs of each transaction (None where none were logged); on a
        cluster one MGET per slot, pipelined per node."""
        if not transaction_ids:
            return []
        keys = [self.keys.event("f", t) for t in transaction_ids]
        client: Any = self._client
        found: list[Any] = client.mget_nonatomic(keys) if self._cluster else client.mget(keys)
        return found
