"""Micro-benchmark of the feature cache's Redis paths: CPU µs per event of one batch's read
(``FeatureCache.fetch``: one MGET of cards, merchants and velocity states) and write
(``record_velocity``: the compare-and-set script sent; ``velocity_written``: its replies).

Run: source .dev/env; PYTHONPATH=. .venv/bin/python bench/redis_io.py [--cards 50000]
     [--batch 500] [--batches 60] [--rounds 5]

Against the Redis of ``STREAMER_REDIS_URL`` (``make dev-up``), under a fresh key prefix
deleted at the end. The synthetic population's features are loaded, then each round
streams ``--batches`` batches of ``--batch`` synthetic events (the stream's mix of cards
and merchants) through fetch, fold and write, as ``streamer run`` does with a backlog;
each round starts with no velocity state (``make bench``'s drain: mostly each card's first
transaction). Figures are ``time.thread_time`` (this thread's CPU, so Redis's own work and
waits are not in them) per event, median over rounds (best in brackets); the fold is run
but not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from typing import Any

import numpy as np
import redis

from streamer.dev.synth import generate_events, make_population
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import FeatureCache
from streamer.features.engineering import event_columns
from streamer.features.enrichment import fold_events
from streamer.features.layout import CARD_DEFAULTS, MERCHANT_DEFAULTS
from streamer.features.loader import load_feature_set, synthetic_features
from streamer.features.redis_client import make_redis_client


def one_round(cache: FeatureCache, batches: list[list[dict[str, Any]]]) -> dict[str, float]:
    """CPU seconds of each Redis step over ``batches``, streamed from offset 0."""
    spent = {"fetch": 0.0, "send": 0.0, "written": 0.0}
    offset = 0
    clock = time.thread_time
    for events in batches:
        cards = [e["card_id"] for e in events]
        merchants = [e["merchant_id"] for e in events]
        start = clock()
        features = cache.fetch(cards, merchants)
        spent["fetch"] += clock() - start
        assert features.velocity is not None
        assert not features.degraded
        read = features.velocity
        batch = fold_events(
            dict(zip(read.cards, read.states, strict=True)),
            events,
            event_columns(events),
            list(range(offset, offset + len(events))),
        )
        offset += len(events)
        start = clock()
        cache.record_velocity(batch)
        spent["send"] += clock() - start
        start = clock()
        cache.velocity_written()
        spent["written"] += clock() - start
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    client = make_redis_client(os.environ["STREAMER_REDIS_URL"], password=None, timeout_ms=2000)
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    now = time.time_ns() // 1_000_000
    load_feature_set(client, prefix, synthetic_features(7, now, n_cards=args.cards), batch=1000)
    population = make_population(7, args.cards)
    events = generate_events(population, args.batch * args.batches, seed=3, start_ms=now)
    batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
    cache = FeatureCache(
        client,
        prefix=prefix,
        card_defaults=CARD_DEFAULTS,
        merchant_defaults=MERCHANT_DEFAULTS,
        breaker=CircuitBreaker(),
        velocity="read-write",
    )
    rounds: list[dict[str, float]] = []
    try:
        for _ in range(args.rounds):
            _forget_velocity(client, prefix)
            rounds.append(one_round(cache, batches))
        assert cache.stats.errors == 0
        assert cache.stats.velocity["write", "failed"] == 0
    finally:
        _forget_velocity(client, prefix, everything=True)
    n = len(events)
    for step in ("fetch", "send", "written"):
        per_event = [r[step] / n * 1e6 for r in rounds]
        print(f"{step:8s} {statistics.median(per_event):6.2f} µs/event (best {min(per_event):.2f})")
    total = [sum(r.values()) / n * 1e6 for r in rounds]
    print(f"{'total':8s} {statistics.median(total):6.2f} µs/event (best {min(total):.2f})")
    print(f"batches of {args.batch}, {args.batches} a round, {args.cards} cards")


def _forget_velocity(client: redis.Redis, prefix: str, *, everything: bool = False) -> None:
    """Delete the velocity states under ``prefix`` (with ``everything``, every key)."""
    pattern = f"{prefix}*" if everything else f"{prefix}vel:*"
    keys = list(client.scan_iter(match=pattern, count=10_000))
    for i in range(0, len(keys), 10_000):
        client.unlink(*keys[i : i + 10_000])


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
