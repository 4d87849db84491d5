"""The monitor's key layout: on a cluster every key one script call touches lies in one slot
(Redis Cluster refuses the call otherwise); on one node the names carry no tag."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from streamer.monitor.keys import CLUSTER_SHARDS, KeyLayout, id_key

ids = st.one_of(st.uuids().map(str), st.text(min_size=1, max_size=40))
prefixes = st.text(alphabet="abc:-_0", max_size=8).map(lambda p: f"{p}mon:")


def _slot(key: str | bytes) -> int:
    return key_slot(key.encode() if isinstance(key, str) else key)


@given(transaction_id=ids, prefix=prefixes, hour=st.integers(0, 10**6))
def test_a_transactions_keys_and_its_hour_hashes_share_one_slot(
    transaction_id: str, prefix: str, hour: int
) -> None:
    layout = KeyLayout(prefix, CLUSTER_SHARDS)
    shard = layout.shard(transaction_id)
    keys = [layout.event(kind, transaction_id) for kind in "slf"]
    keys += [layout.hour(kind, hour, shard) for kind in "cj"]
    assert len({_slot(k) for k in keys}) == 1
    assert len({_slot(k) for k in layout.interned("version")}) == 1


def test_the_shards_spread_over_many_slots_and_one_node_keeps_plain_names() -> None:
    layout = KeyLayout("p:mon:", CLUSTER_SHARDS)
    assert len({_slot(k) for k in layout.hours("j", 7)}) == CLUSTER_SHARDS
    txn = str(uuid.uuid4())
    one = KeyLayout("p:mon:")
    assert one.event("s", txn) == b"p:mon:s:" + uuid.UUID(txn).bytes
    assert one.hours("j", 7) == ["p:mon:j:7"]
    assert one.interned("version") == ("p:mon:i:version", "p:mon:i:version:ids")
    assert id_key("not-a-uuid") == b"tnot-a-uuid"
