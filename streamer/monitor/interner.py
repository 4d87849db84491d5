"""Names the monitor stores as small ids: model versions, label sources, feature sets."""

from __future__ import annotations

import json
from collections.abc import Sequence

from redis import Redis

from streamer.monitor.keys import KeyLayout

_INTERN_SCRIPT = """
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then
  id = redis.call('HINCRBY', KEYS[2], '#next', 1)
  redis.call('HSET', KEYS[1], ARGV[1], id)
  redis.call('HSET', KEYS[2], id, ARGV[1])
end
return id
"""


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
