"""Redis feature layouts compared on a real redis-server: hashes vs packed values.

    python bench/feature_layout.py [--redis-url redis://127.0.0.1:6379/0] [--rounds 300]

Each round draws 256 distinct cards and 256 distinct merchants (one micro-batch) and reads
their features into float64 matrices both ways, in random order per round so that drift
in this VM's speed hits both alike:

- hash:   one HASH per entity (fields as decimal text), HMGET of every field for each key
          in one pipeline, parsed with float();
- packed: one string per entity (``streamer.features.engineering.pack``), one MGET for the batch,
          ``unpack_rows`` (``np.frombuffer``).

Timings include key building, the round trip, client parsing and building the matrix.
Without ``--redis-url`` a throwaway redis-server is started. Results go to stdout and to
``bench/results/feature_layout.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import redis

from streamer import features as f
from streamer.features.loader import load_feature_set, synthetic_features

NOW_MS = 1_767_225_600_000
OUT = Path(__file__).parent / "results" / "feature_layout.json"
Reader = Callable[[redis.Redis, list[str], list[str]], tuple[np.ndarray, np.ndarray]]


def read_hashes(client: redis.Redis, cards: list[str], merchants: list[str]) -> Any:
    pipe = client.pipeline(transaction=False)
    for entity in cards:
        pipe.hmget(f"{PREFIX}hash:card:{entity}", f.CARD_FIELDS)
    for entity in merchants:
        pipe.hmget(f"{PREFIX}hash:merchant:{entity}", f.MERCHANT_FIELDS)
    replies = pipe.execute()
    return (
        _parse(replies[: len(cards)], f.CARD_DEFAULTS),
        _parse(replies[len(cards) :], f.MERCHANT_DEFAULTS),
    )


def _parse(replies: list[list[bytes | None]], defaults: np.ndarray) -> np.ndarray:
    fallback = defaults.tolist()
    return np.array(
        [
            [float(v) if v is not None else d for v, d in zip(row, fallback, strict=True)]
            for row in replies
        ],
        dtype=np.float64,
    )


def read_packed(client: redis.Redis, cards: list[str], merchants: list[str]) -> Any:
    keys = [f.card_key(PREFIX, c) for c in cards] + [f.merchant_key(PREFIX, m) for m in merchants]
    blobs = client.mget(keys)
    card, _ = f.unpack_rows(blobs[: len(cards)], f.CARD_DEFAULTS)
    merchant, _ = f.unpack_rows(blobs[len(cards) :], f.MERCHANT_DEFAULTS)
    return card, merchant


PREFIX = f"bench-{uuid.uuid4().hex[:8]}:"
CASES: dict[str, Reader] = {"hash_hmget_pipeline": read_hashes, "packed_mget": read_packed}


def populate(client: redis.Redis, n_cards: int, n_merchants: int) -> tuple[list[str], list[str]]:
    feature_set = synthetic_features(1, NOW_MS, n_cards=n_cards, n_merchants=n_merchants)
    load_feature_set(client, PREFIX, feature_set)
    pipe = client.pipeline(transaction=False)
    for kind, rows, fields in (
        ("card", feature_set.cards, f.CARD_FIELDS),
        ("merchant", feature_set.merchants, f.MERCHANT_FIELDS),
    ):
        for i, (entity, row) in enumerate(rows.items()):
            mapping = {name: repr(float(v)) for name, v in zip(fields, row, strict=True)}
            pipe.hset(f"{PREFIX}hash:{kind}:{entity}", mapping=mapping)
            if i % 1000 == 999:
                pipe.execute()
    pipe.execute()
    return list(feature_set.cards), list(feature_set.merchants)


def memory_per_entity(client: redis.Redis, cards: list[str]) -> dict[str, float]:
    sample = cards[:200]
    packed = [client.memory_usage(f.card_key(PREFIX, c)) or 0 for c in sample]
    hashed = [client.memory_usage(f"{PREFIX}hash:card:{c}") or 0 for c in sample]
    return {
        "packed_bytes_per_card": statistics.mean(packed),
        "hash_bytes_per_card": statistics.mean(hashed),
    }


def run(client: redis.Redis, args: argparse.Namespace) -> dict[str, Any]:
    cards, merchants = populate(client, args.cards, args.merchants)
    rng = np.random.default_rng(args.seed)
    timings: dict[str, list[float]] = {name: [] for name in CASES}
    for round_no in range(args.warmup + args.rounds):
        batch_cards = [cards[i] for i in rng.choice(len(cards), args.batch, replace=False)]
        batch_merchants = [
            merchants[i] for i in rng.choice(len(merchants), args.batch, replace=False)
        ]
        results = {}
        for name in rng.permutation(list(CASES)):
            started = time.perf_counter_ns()
            results[name] = CASES[name](client, batch_cards, batch_merchants)
            elapsed = (time.perf_counter_ns() - started) / 1000.0
            if round_no >= args.warmup:
                timings[name].append(elapsed)
        # Both layouts must yield the same matrices, or the comparison means nothing.
        for a, b in zip(results["hash_hmget_pipeline"], results["packed_mget"], strict=True):
            np.testing.assert_array_equal(a, b)
    keys = 2 * args.batch
    report: dict[str, Any] = {}
    for name, values in timings.items():
        median = statistics.median(values)
        report[name] = {
            "us_per_batch_median": round(median, 1),
            "us_per_batch_p90": round(float(np.percentile(values, 90)), 1),
            "us_per_batch_p99": round(float(np.percentile(values, 99)), 1),
            "keys_per_s": round(keys / median * 1e6),
            "us_per_key": round(median / keys, 3),
        }
    report["speedup_packed_over_hash"] = round(
        report["hash_hmget_pipeline"]["us_per_batch_median"]
        / report["packed_mget"]["us_per_batch_median"],
        1,
    )
    report["memory"] = memory_per_entity(client, cards)
    return report


def cleanup(client: redis.Redis) -> None:
    batch = []
    for key in client.scan_iter(match=f"{PREFIX}*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def _safe_argv() -> list[str]:
    # A --redis-url may carry a password: keep it out of the results file.
    out, hide = [], False
    for arg in sys.argv[1:]:
        secret = hide or arg.startswith("--redis-url=")
        out.append(("--redis-url=..." if "=" in arg else "...") if secret else arg)
        hide = arg == "--redis-url"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--cards", type=int, default=20_000)
    parser.add_argument("--merchants", type=int, default=2_000)
    parser.add_argument(
        "--batch", type=int, default=256, help="distinct cards (and merchants) per batch"
    )
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    server = None
    url = args.redis_url
    if url is None:
        from streamer.dev.devstack.redis import RedisServer

        server = RedisServer(workdir=Path(tempfile.mkdtemp(prefix="bench-redis-")))
        server.start()
        url = server.url
    client = redis.Redis.from_url(url)
    try:
        report = run(client, args)
        info = client.info("server")
    finally:
        cleanup(client)
        client.close()
        if server is not None:
            server.stop()

    result = {
        "benchmark": "feature_layout",
        "command": " ".join(["python", "bench/feature_layout.py", *_safe_argv()]),
        "params": {k: v for k, v in vars(args).items() if k not in {"redis_url", "out"}},
        "environment": {
            "python": platform.python_version(),
            "redis_server": info.get("redis_version"),
            "redis_py": redis.__version__,
            "hiredis": bool(getattr(redis.utils, "HIREDIS_AVAILABLE", False)),
            "cpus": os.cpu_count(),
            "redis": "started by the benchmark" if server is not None else "given by --redis-url",
        },
        "results": report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    version = info.get("redis_version")
    print(
        f"{args.batch} cards + {args.batch} merchants/batch, {args.rounds} rounds, redis {version}"
    )
    for name in CASES:
        r = report[name]
        print(
            f"  {name:20s} {r['us_per_batch_median']:8.1f} µs/batch"
            f" (p90 {r['us_per_batch_p90']:.1f})  {r['keys_per_s']:>9,} keys/s"
            f"  {r['us_per_key']:.2f} µs/key"
        )
    memory = report["memory"]
    print(f"  packed is {report['speedup_packed_over_hash']}x faster; bytes per card {memory}")
    print(f"  written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
