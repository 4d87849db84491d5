"""The join state in Redis: what was served, what was learned later, and the two joined.

Keys (``P`` = ``STREAMER_REDIS_KEY_PREFIX`` + ``mon:``; ``<id>`` = a UUID's 16 bytes, or
``t`` + the id's text for ids that are not canonical UUIDs):

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
other's). Hour buckets expire a label horizon after the hour ends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis

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


def id_key(transaction_id: str) -> bytes:
    """A transaction id as a short key part: a canonical UUID's 16 bytes, else the text."""
    if len(transaction_id) == 36:
        try:
            parsed = uuid.UUID(transaction_id)
        except ValueError:
            parsed = None
        if parsed is not None and str(parsed) == transaction_id:
            return parsed.bytes
    return b"t" + transaction_id.encode()


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
    monitor process through Redis and cached here (an id never changes meaning)."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._client, self._prefix = client, prefix
        self._script = client.register_script(_INTERN_SCRIPT)
        self._ids: dict[tuple[str, str], int] = {}
        self._names: dict[tuple[str, int], str] = {}

    def id(self, namespace: str, name: str) -> int:
        """The id of ``name`` in ``namespace``, assigned on first use (ids start at 1)."""
        found = self._ids.get((namespace, name))
        if found is None:
            keys = [f"{self._prefix}i:{namespace}", f"{self._prefix}i:{namespace}:ids"]
            found = int(self._script(keys=keys, args=[name]))
            self._ids[(namespace, name)] = found
        return found

    def name(self, namespace: str, id_: int) -> str | None:
        """The name of ``id_`` in ``namespace`` (None for 0 or an unknown id)."""
        if not id_:
            return None
        found = self._names.get((namespace, id_))
        if found is None:
            raw = self._client.hget(f"{self._prefix}i:{namespace}:ids", str(id_))
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


class JoinState:
    """Scored events and labels joined in Redis (see the module docstring for the keys)."""

    def __init__(self, client: Redis, key_prefix: str, horizon_ms: int) -> None:
        self.prefix = f"{key_prefix}mon:"
        self._client = client
        self._horizon_ms = horizon_ms
        self._scored = client.register_script(_SCORED_SCRIPT)
        self._labels = client.register_script(_LABEL_SCRIPT)
        self.interner = Interner(client, self.prefix)

    def _key(self, kind: str, transaction_id: str) -> bytes:
        return f"{self.prefix}{kind}:".encode() + id_key(transaction_id)

    def _expire_at(self, hour: int) -> int:
        return (hour + 1) * HOUR_MS + self._horizon_ms

    def add_scored(self, writes: Sequence[ScoredWrite]) -> Applied:
        """Keep scored events (the first served wins) and join those already labelled."""
        if not writes:
            return Applied()
        keys: list[bytes | str] = []
        args: list[bytes | str | int] = [self._horizon_ms]
        for w in writes:
            keys += [self._key("s", w.transaction_id), self._key("l", w.transaction_id)]
            keys += [f"{self.prefix}c:{w.hour}", f"{self.prefix}j:{w.hour}"]
            keys.append(self._key("f", w.transaction_id))
            args += [w.packed, w.version_id, self._expire_at(w.hour), w.transaction_id, w.features]
        codes = [int(c) for c in self._scored(keys=keys, args=args)]
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
        keys: list[bytes] = []
        for w in writes:
            keys += [self._key("l", w.transaction_id), self._key("s", w.transaction_id)]
        replies = self._labels(keys=keys, args=[self._horizon_ms, *(w.packed for w in writes)])
        pipe = self._client.pipeline(transaction=False)
        new = joined = 0
        for w, (is_new, label, scored) in zip(writes, replies, strict=True):
            new += int(is_new)
            if scored:  # replays re-write the same bytes: a hash field per transaction
                hour = event_hour(scored)
                pipe.hset(f"{self.prefix}j:{hour}", w.transaction_id, scored + label)
                pipe.pexpireat(f"{self.prefix}j:{hour}", self._expire_at(hour))
                joined += int(is_new)
        pipe.execute()
        return Applied(new=new, joined=joined, pending=new - joined, duplicate=len(writes) - new)

    def joined(self, hours: Iterable[int]) -> Iterator[tuple[str, bytes]]:
        """(transaction id, joined bytes) of every joined event in those event-time hours."""
        for hour in hours:
            seen: dict[bytes | str, bytes] = {}  # HSCAN may return a field twice
            for field, value in self._client.hscan_iter(
                f"{self.prefix}j:{hour}", count=_SCAN_COUNT
            ):
                seen[field] = value
            for field, value in seen.items():
                yield (field.decode() if isinstance(field, bytes) else field), value

    def scored_counts(self, hours: Iterable[int]) -> dict[int, int]:
        """Scored events per model version id over those event-time hours."""
        pipe = self._client.pipeline(transaction=False)
        for hour in hours:
            pipe.hgetall(f"{self.prefix}c:{hour}")
        totals: dict[int, int] = {}
        for counts in pipe.execute():
            for version, n in counts.items():
                totals[int(version)] = totals.get(int(version), 0) + int(n)
        return totals

    def features(self, transaction_ids: Sequence[str]) -> list[bytes | None]:
        """The logged model inputs of each transaction (None where none were logged)."""
        if not transaction_ids:
            return []
        found: list[Any] = self._client.mget([self._key("f", t) for t in transaction_ids])
        return found
