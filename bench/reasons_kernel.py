"""The cost of reason codes inside the scoring kernel, without Kafka or Redis.

``make bench`` measures the whole pipeline (contenders "streamer, reasons off" and
"streamer, reasons on every event"), where on a shared 2-core VM a few µs per event are
lost in the noise of the broker and Redis. This scores the same batches with
STREAMER_REASONS off, flagged and all, interleaved in rotating order, on in-memory
features, and reports the median CPU time per event of each. A share of each batch
(``--flagged``, default 4%: the demo's flag rate) is foreign card-not-present payments of
large amounts, which the model flags; the rest are ordinary payments it approves.

    python bench/reasons_kernel.py --rounds 60

``--rows FILE`` times the contributions alone instead, on rows of the model's input
matrix (float32, row-major, e.g. a drain's flagged rows saved with ``ndarray.tofile``), in
batches of ``--batch``: the C TreeSHAP from an empty memory, then the same rows again, and
LightGBM's own.

    python bench/reasons_kernel.py --rows flagged.bin --batch 60
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamer import ScoringKernel, load_model  # noqa: E402
from streamer.scoring.reasons import Mode, ReasonSettings  # noqa: E402
from streamer.testing import InMemoryFeatures, sample_event  # noqa: E402

MODES: tuple[Mode, ...] = ("off", "flagged", "all")


def _events(n: int, flagged: float) -> list[dict[str, Any]]:
    every = max(round(1 / flagged), 1) if flagged > 0 else n + 1
    return [
        sample_event(
            card_id=f"card-{i % 300}",
            merchant_id=f"m-{i % 50}",
            amount_minor=900_000 + i,
            merchant_country="NG",
            channel="ECOMMERCE",
            entry_mode="MANUAL",
            card_present=False,
        )
        if i % every == every - 1
        else sample_event(
            card_id=f"card-{i % 300}", merchant_id=f"m-{i % 50}", amount_minor=1000 + i
        )
        for i in range(n)
    ]


def time_rows(path: Path, model_name: str, batch: int) -> None:
    """µs of CPU per row of the C TreeSHAP (a fresh one: an empty memory) on the rows in
    ``path``, twice, and of LightGBM's own on the first 500."""
    from streamer.model.lightgbm_lib import Booster
    from streamer.model.treeshap import FastContributions

    name, _, version = model_name.partition("@")
    text = (REPO / "models" / name / version / "explainer.txt").read_text()
    fast = FastContributions(text)
    rows = np.fromfile(path, dtype=np.float32).reshape(-1, fast.width)
    for explain, label, sample in (
        (fast, "C TreeSHAP, from an empty memory", rows),
        (fast, "C TreeSHAP, the same rows again", rows),
        (Booster(text).contributions, "LightGBM", rows[:500]),
    ):
        started = time.process_time()
        for i in range(0, len(sample), batch):
            explain(sample[i : i + batch])
        cpu = (time.process_time() - started) / len(sample) * 1e6
        print(f"{model_name}, {len(sample):,} rows, batches of {batch}, {label}: {cpu:.1f} µs/row")
    sample = rows[:500]
    gap = np.abs(fast(sample) - Booster(text).contributions(sample))
    ulps = fast.bound(sample) / fast.rounding * 2.0**-53  # an ulp of each input's sum |term|
    print(
        f"largest |C - LightGBM| on {len(sample)} rows: {gap.max():.2e}, "
        f"{np.max(gap / np.where(ulps > 0, ulps, np.inf)):.1f} ulps of the input's sum of "
        f"|term| (bound: {fast.rounding / 2.0**-53:,.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--flagged", type=float, default=0.04)
    parser.add_argument("--model", default="fraud-gbt@2")
    parser.add_argument("--rows", type=Path, help="time the contributions on these rows")
    args = parser.parse_args()
    if args.rows is not None:
        time_rows(args.rows, args.model, args.batch)
        return
    model = load_model(args.model, REPO / "models")
    cards = {f"card-{i}": {"amount_mean_30d": 40, "home_country": "DE"} for i in range(300)}
    events = _events(args.batch, args.flagged)
    sources = [(0, i) for i in range(args.batch)]
    kernels = {
        mode: ScoringKernel(
            model, InMemoryFeatures(model, cards=cards), reasons=ReasonSettings(mode)
        )
        for mode in MODES
    }
    first = kernels["flagged"].score(events, sources)  # warm every kernel
    for kernel in kernels.values():
        kernel.score(events, sources)
    rate = float((first.decisions > 0).mean())
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(args.rounds):
        for mode in MODES[r % 3 :] + MODES[: r % 3]:
            started = time.process_time()
            kernels[mode].score(events, sources)
            cpu[mode].append((time.process_time() - started) / args.batch * 1e6)
    base = float(np.median(cpu["off"]))
    print(f"{args.model}, batches of {args.batch}, {rate:.1%} flagged, {args.rounds} rounds")
    for name, values in cpu.items():
        median = float(np.median(values))
        print(
            f"reasons {name}: {median:.1f} µs CPU/event "
            f"({median - base:+.1f}; throughput {base / median:.3f}x of off)"
        )


if __name__ == "__main__":
    main()
