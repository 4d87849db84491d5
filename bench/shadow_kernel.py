"""The shadow model's cost inside the scoring kernel, without Kafka or Redis.

``make bench`` measures the whole pipeline, where on a shared 2-core VM a few µs per event
are lost in the noise of the broker, Redis and the other contenders. This scores the same
500-event batches with and without a shadow model, interleaved in alternating order, on
in-memory features, and reports the median CPU time per event of each.

    python bench/shadow_kernel.py --rounds 60
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamer import ScoringKernel, load_model  # noqa: E402
from streamer.service.models import load_shadow  # noqa: E402
from streamer.testing import InMemoryFeatures, sample_event  # noqa: E402


def _kernel(model_spec: str, shadow_spec: str | None) -> ScoringKernel:
    model = load_model(model_spec, REPO / "models")
    cards = {f"card-{i}": {"amount_mean_30d": 40, "home_country": "DE"} for i in range(300)}
    kernel = ScoringKernel(model, InMemoryFeatures(model, cards=cards))
    if shadow_spec:
        kernel.use_shadow(load_shadow(shadow_spec, REPO / "models"))
    return kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--model", default="fraud-gbt@2")
    parser.add_argument("--shadow", default="fraud-gbt@1")
    args = parser.parse_args()
    events = [
        sample_event(card_id=f"card-{i % 300}", merchant_id=f"m-{i % 50}", amount_minor=1000 + i)
        for i in range(args.batch)
    ]
    sources = [(0, i) for i in range(args.batch)]
    kernels = {"without": _kernel(args.model, None), "with": _kernel(args.model, args.shadow)}
    cpu: dict[str, list[float]] = {name: [] for name in kernels}
    for kernel in kernels.values():
        kernel.score(events, sources)  # warm
    for r in range(args.rounds):
        for name in sorted(kernels, reverse=bool(r % 2)):
            started = time.process_time()
            kernels[name].score(events, sources)
            cpu[name].append((time.process_time() - started) / args.batch * 1e6)
    base = float(np.median(cpu["without"]))
    for name, values in cpu.items():
        median = float(np.median(values))
        print(f"{name} shadow: {median:.1f} µs CPU/event ({median - base:+.1f})")


if __name__ == "__main__":
    main()
