"""Looking at a test cluster's nodes directly: which are primaries, what keys each holds."""

from __future__ import annotations

from typing import Any

import redis

from streamer.dev.devstack.redis import RedisServer
from streamer.dev.devstack.redis_cluster import RedisClusterGroup


def primaries(cluster: RedisClusterGroup) -> list[RedisServer]:
    nodes = []
    for node in cluster.nodes:
        if not node.pid:
            continue
        client: Any = redis.Redis(**node.client_kwargs())
        try:
            if client.info("replication")["role"] == "master":
                nodes.append(node)
        finally:
            client.close()
    return nodes


def count_keys(node: RedisServer, pattern: str) -> int:
    client: Any = redis.Redis(**node.client_kwargs())
    try:
        return sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()
