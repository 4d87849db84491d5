"""The feature cache's Redis path on one node and on a 3-primary Redis Cluster.

For batches of the stream's size (500 events of the synthetic population), times the
read (``FeatureCache.fetch``: snapshots and velocity states) and the velocity write
(``write_states``) in this process, and counts the commands sent on each connection of a
batch (``send_packed_command`` calls: one per node per round trip). Both servers run on
this machine; prints a table and writes JSON (bench/results/redis-cluster.json).

    .venv/bin/python bench/redis_cluster.py --batches 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from redis.connection import AbstractConnection

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamer.dev.devstack.redis import RedisServer  # noqa: E402
from streamer.dev.devstack.redis_cluster import RedisClusterGroup  # noqa: E402
from streamer.dev.synth import generate_events, make_population  # noqa: E402
from streamer.features.breaker import CircuitBreaker  # noqa: E402
from streamer.features.cache import FeatureCache  # noqa: E402
from streamer.features.layout import CARD_DEFAULTS, MERCHANT_DEFAULTS  # noqa: E402
from streamer.features.loader import load_command  # noqa: E402
from streamer.features.redis_client import make_redis_client  # noqa: E402
from streamer.features.velocity_state import CardState, high_position, pack  # noqa: E402
from streamer.features.velocity_store import write_states  # noqa: E402

SENDS = {"n": 0}


@contextmanager
def counted_sends() -> Iterator[None]:
    """Count every packed write to a Redis socket (one per node per round trip)."""
    original = AbstractConnection.send_packed_command

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        SENDS["n"] += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def measure(client: Any, batches: list[list[dict[str, Any]]]) -> dict[str, float]:
    load_command(client, prefix="", file=None, n_cards=5000, n_merchants=500)
    cache = FeatureCache(
        client,
        prefix="",
        card_defaults=CARD_DEFAULTS,
        merchant_defaults=MERCHANT_DEFAULTS,
        breaker=CircuitBreaker(3, 1.0),
        budget_s=5.0,
        velocity="read-write",
    )
    reads, writes, sends = [], [], []
    for n, batch in enumerate(batches):
        cards = [e["card_id"] for e in batch]
        merchants = [e["merchant_id"] for e in batch]
        SENDS["n"] = 0
        t0 = time.perf_counter()
        features = cache.fetch(cards, merchants)
        t1 = time.perf_counter()
        updates = {c: _state(n + 1) for c in dict.fromkeys(cards)}
        positions = {c: high_position(blob) for c, blob in updates.items()}
        done = write_states(client, "", updates, positions)
        t2 = time.perf_counter()
        assert not features.degraded
        assert done.written == len(updates), done
        reads.append(t1 - t0)
        writes.append(t2 - t1)
        sends.append(SENDS["n"])
    warm = slice(len(batches) // 10, None)  # the first tenth connects and loads scripts
    return {
        "read_ms_p50": 1000 * float(np.median(reads[warm])),
        "write_ms_p50": 1000 * float(np.median(writes[warm])),
        "sends_per_batch": float(np.mean(sends[warm])),
        "batches": len(batches),
    }


def on_both(
    measure_one: Callable[[Any], dict[str, float]], timeout_ms: float
) -> dict[str, dict[str, float]]:
    """``measure_one`` on a fresh one-node Redis, then on a fresh 3-primary cluster, with
    socket writes counted (``SENDS``); both stopped after."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, counted_sends():
        single = RedisServer(Path(tmp) / "single")
        cluster = RedisClusterGroup(Path(tmp) / "cluster")
        try:
            single.start()
            cluster.start()
            one = make_redis_client(single.url, password=None, timeout_ms=timeout_ms)
            results["one node"] = measure_one(one)
            many = make_redis_client(
                cluster.url, password=None, timeout_ms=timeout_ms, mode="cluster"
            )
            results["cluster, 3 primaries"] = measure_one(many)
        finally:
            single.stop()
            cluster.stop()
    return results


def _state(position: int) -> bytes:
    """A well-formed state at ``position`` with no entries (header only: the write's cost
    here is the round trips and the script calls, not the bytes)."""
    return pack(CardState(high=position + 1))  # the header holds the position plus one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/redis-cluster.json")
    args = parser.parse_args()
    population = make_population(7)
    events = generate_events(population, args.batches * args.size, seed=11, start_ms=0)
    batches = [events[i : i + args.size] for i in range(0, len(events), args.size)]
    results = on_both(lambda client: measure(client, batches), timeout_ms=1000)
    print(f"{args.size}-event batches, {args.batches} of them; load {os.getloadavg()[0]:.1f}")
    for name, r in results.items():
        print(
            f"{name:22} read p50 {r['read_ms_p50']:6.2f} ms  write p50 {r['write_ms_p50']:6.2f}"
            f" ms  socket writes per batch {r['sends_per_batch']:.2f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.json.write_text(json.dumps({"when": when, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
