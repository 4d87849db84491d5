"""The join state's key names, on one Redis node and on a Redis Cluster.

Each scored event's script writes its own keys (scored event, label, logged inputs) and
two hashes per event-time hour (scored counts, joined events) in one atomic call, so that
a kill -9 can neither count an event twice nor lose its count. Redis Cluster runs a
script only on keys of one slot, so there every key carries a hash tag: a transaction's
keys, and the hour hashes they update, share the tag of the transaction's shard
(``{m<n>}``, ``n`` = CRC-32 of the transaction id modulo ``CLUSTER_SHARDS``). A batch then
costs one script call per shard touched, grouped by node. The shards spread the state
over ``CLUSTER_SHARDS`` slots (on every primary), and split each hour's hashes as many
ways: a report reads that many hashes per hour, pipelined per node.

On one node (and a Sentinel primary) there is one shard and no tag: the names are
``P s:<id>``, ``P j:<hour>``, … (``P`` = ``STREAMER_REDIS_KEY_PREFIX`` + ``mon:``). The two
layouts do not share state: a monitor moved from one node to a cluster starts empty.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass

CLUSTER_SHARDS = 64


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
class KeyLayout:
    """Key names under ``prefix`` (ending ``mon:``) for ``shards`` shards (1: no tags)."""

    prefix: str
    shards: int = 1

    def shard(self, transaction_id: str) -> int:
        """The shard of a transaction: where its keys and its hour hash fields live."""
        return zlib.crc32(id_key(transaction_id)) % self.shards if self.shards > 1 else 0

    def _tag(self, shard: int) -> str:
        return f"{{m{shard}}}" if self.shards > 1 else ""

    def event(self, kind: str, transaction_id: str) -> bytes:
        """``s`` (scored), ``l`` (label) or ``f`` (logged inputs) of one transaction."""
        tag = self._tag(self.shard(transaction_id))
        return f"{self.prefix}{tag}{kind}:".encode() + id_key(transaction_id)

    def hour(self, kind: str, hour: int, shard: int) -> str:
        """``c`` (scored counts) or ``j`` (joined events) of an hour, in one shard."""
        return f"{self.prefix}{self._tag(shard)}{kind}:{hour}"

    def hours(self, kind: str, hour: int) -> list[str]:
        """Every shard's ``kind`` hash of an hour."""
        return [self.hour(kind, hour, shard) for shard in range(self.shards)]

    def interned(self, namespace: str) -> tuple[str, str]:
        """The name -> id and id -> name hashes of a namespace (one slot on a cluster)."""
        base = (
            f"{self.prefix}i:{{{namespace}}}" if self.shards > 1 else f"{self.prefix}i:{namespace}"
        )
        return base, f"{base}:ids"
