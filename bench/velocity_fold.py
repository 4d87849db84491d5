"""Micro-benchmark of ``velocity.fold``: CPU µs per event on the stream's hot path.

Run: PYTHONPATH=. .venv/bin/python bench/velocity_fold.py [--cards 5000] [--per-day 20]
     [--batch 500] [--rounds 7]

``--days 0`` gives the cards no history: the live path of a stream whose cards have no
stored state yet (``make bench`` drains its backlog so, 200,000 cards), mostly each
card's first transaction.

Every card gets ``--days`` days of history at ``--per-day`` transactions a day (times
spread evenly with jitter, amounts log-normal), folded once offline. The timed part is the
stream's: the next transactions of random cards in batches of ``--batch`` (mostly one
event per card, the common case), each batch folded from the stored bytes and packed
again, as the stream does between its Redis read and write. The figure is
``time.process_time`` per event, median over rounds (the best in brackets), and the bytes
per card of the packed states.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from streamer.features.velocity import fold

DAY_MS = 86_400_000


def history(
    cards: int, days: int, per_day: int, seed: int, stride: int = 100
) -> tuple[dict[str, bytes | None], int, int]:
    """States after ``days`` of history per card, the next position and the end time. The
    cards share one partition with others (``stride`` times as many events as they have):
    card c's i-th event is at position ``(i * cards + c) * stride``."""
    rng = np.random.default_rng(seed)
    start = 1_767_225_600_000 - days * DAY_MS
    n = days * per_day
    states: dict[str, bytes | None] = {}
    if not n:
        return {f"card-{c:06d}": None for c in range(cards)}, 0, start
    for c in range(cards):
        card = f"card-{c:06d}"
        step = DAY_MS // per_day
        times = start + np.arange(n) * step + rng.integers(0, step // 2, n)
        batch = fold(
            {},
            [card] * n,
            [f"{card}-h{i}" for i in range(n)],
            (np.arange(n) * cards + c) * stride,
            times,
            np.round(rng.lognormal(3.5, 1.0, n), 2),
            [f"m-{m}" for m in rng.integers(0, 200, n)],
            rng.integers(1, 858, n).astype(np.float64),
        )
        states[card] = batch.updates[card]
    return states, n * cards * stride, start + days * DAY_MS


def run(args: argparse.Namespace) -> None:
    states, position, now = history(args.cards, args.days, args.per_day, args.seed)
    sizes = [len(b) for b in states.values() if b is not None] or [0]
    print(f"state bytes per card: median {statistics.median(sizes):.0f}, max {max(sizes)}")
    rng = random.Random(args.seed)
    ids = list(states)
    rounds: list[float] = []
    for r in range(args.rounds):
        n = args.batch
        cards = [rng.choice(ids) for _ in range(n)]
        txns = [f"r{r}-{i}" for i in range(n)]
        positions = list(range(position, position + n))
        position += n
        times = [now + r * 60_000 + i for i in range(n)]
        amounts = [round(rng.lognormvariate(3.5, 1.0), 2) for _ in range(n)]
        merchants = [f"m-{rng.randrange(200)}" for _ in range(n)]
        countries = [float(rng.randrange(1, 858)) for _ in range(n)]
        stored = {c: states[c] for c in cards}
        begin = time.process_time()
        batch = fold(stored, cards, txns, positions, times, amounts, merchants, countries)
        rounds.append((time.process_time() - begin) / n * 1e6)
        states.update(batch.updates)
    print(
        f"fold: {statistics.median(rounds):.2f} µs/event (best {min(rounds):.2f}), "
        f"batches of {args.batch}, {args.cards} cards, {args.per_day}/day for {args.days} days"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=5000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
