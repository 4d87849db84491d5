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
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis

from streamer.features.redis_cluster import eval_per_node, is_cluster
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
_INTERN_SCRIPT = """
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then
  id = redis.call('HINCRBY', KEYS[2], '#next', 1)
  redis.call('HSET', KEYS[1], ARGV[1], id)
  redis.call('HSET', KEYS[2], id, ARGV[1])
end
return id
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


class Interner:
    """Names (model versions, label sources, feature sets) as small ids, shared by every
    monitor process through Redis and cached here (an id never changes meaning). A name is
    interned once per process, so its script goes as EVAL (no script cache to miss)."""

    def __init__(self, client: Redis, layout: KeyLayout) -> None:
        self._client, self._layout = client, layout
        self._ids: dict[tuple[str, str], int] = {}
        self._names: dict[tuple[str, int], str] = {}

    def id(self, namespace: str, name: str) -> int:
        """The id of ``name`` in ``namespace``, assigned on first use (ids start at 1)."""
        found = self._ids.get((namespace, name))
        if found is None:
            keys = self._layout.interned(namespace)
            found = int(self._client.eval(_INTERN_SCRIPT, 2, *keys, name))
            self._ids[(namespace, name)] = found
        return found

    def name(self, namespace: str, id_: int) -> str | None:
        """The name of ``id_`` in ``namespace`` (None for 0 or an unknown id)."""
        if not id_:
            return None
        found = self._names.get((namespace, id_))
        if found is None:
            raw = self._client.hget(self._layout.interned(namespace)[1], str(id_))
            if raw is None:
                return None
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            found = self._names[(namespace, id_)] = text
        return found

    def feature_set(self, names: Sequence[str]) -> int:
        """The id of an ordered tuple of feature names."""
        return self.id("features", json.dumps(list(names), separators=(",", ":")))

    def feature_names(self, set_id: int) -> list[str] | None:
        text = self.name("features", set_id)
        return None if text is None else list(json.loads(text))


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
        pipe = self._client.pipeline(transaction=False)
        new = joined = 0
        for group, replies in zip(groups, self._run(_LABEL_SCRIPT, calls), strict=True):
            for i, (is_new, label, scored) in zip(group, replies, strict=True):
                new += int(is_new)
                if scored:  # replays re-write the same bytes: a hash field per transaction
                    hour, w = event_hour(scored), writes[i]
                    key = self.keys.hour("j", hour, self.keys.shard(w.transaction_id))
                    pipe.hset(key, w.transaction_id, scored + label)
                    pipe.pexpireat(key, self._expire_at(hour))
                    joined += int(is_new)
        pipe.execute()
        return Applied(new=new, joined=joined, pending=new - joined, duplicate=len(writes) - new)

    def joined(self, hours: Iterable[int]) -> Iterator[tuple[str, bytes]]:
        """(transaction id, joined bytes) of every joined event in those event-time hours:
        a day's hashes (every shard's) scanned together, one pipelined round trip per node
        a page."""
        hours = list(hours)
        for start in range(0, len(hours), _HOURS_A_TRIP):
            keys = [
                k
                for hour in hours[start : start + _HOURS_A_TRIP]
                for k in self.keys.hours("j", hour)
            ]
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
        pipe = self._client.pipeline(transaction=False)
        for hour in hours:
            for key in self.keys.hours("c", hour):
                pipe.hgetall(key)
        totals: dict[int, int] = {}
        for counts in pipe.execute():
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
