"""Detection of velocity attacks on a held-out synthetic day, per model version.

Run: PYTHONPATH=. .venv/bin/python bench/detection.py [--versions 2 3]
     [--out bench/results/detection.json] [--avro HELDOUT.avro]

A population and a history neither model trained on (``--pop-seed``, ``--seed``): every
card's normal traffic over ``--days`` days, attacks injected on the last day only (card
testing, account takeover, bust-out sprees whose ramps start days earlier, single-event
fraud). Every event gets the features the stream would give it (the snapshot's static
fields as ``features load --synthetic --seed POP_SEED`` writes them, the velocity fields
folded over the whole history in file order: ``streamer.dev.history_features``, whose rows
equal the scoring kernel's), and both versions score the same matrix with ONNX Runtime and
decide with the thresholds in their metadata. Only the last day is counted.

Reported per version: the share of events of each kind sent to REVIEW or DECLINE; the
share of card-testing bursts with a flag among their first five transactions; the
transaction of a burst (1 = first) at which the model first flags it (median over the
bursts it flags, and how many it never flags); the share of each decision on normal
traffic. ``--avro`` also writes the whole history as an Avro container of
TransactionEvents: the file ``streamer models gate --file`` replays.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.dev import attacks, history_features, synth
from streamer.dev.attacks import AttackRates, History
from streamer.model.registry import load_model
from streamer.model.scorer import Scorer
from streamer.scoring.decisions import decide

REPO = Path(__file__).parents[1]
START_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z, after every training history
DAY_MS = 86_400_000
CAUGHT_BY = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--name", default="fraud-gbt")
    parser.add_argument("--versions", nargs="+", default=["2", "3"])
    parser.add_argument("--pop-seed", type=int, default=11)
    parser.add_argument("--cards", type=int, default=5000)
    parser.add_argument("--merchants", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--attack-scale", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "detection.json")
    parser.add_argument("--avro", type=Path, default=None)
    return parser.parse_args()


def held_out(args: argparse.Namespace) -> History:
    """The held-out history: attacks (``--attack-scale`` x the training rates) on the
    last day; single-event fraud at the training rate."""
    pop = synth.make_population(args.pop_seed, n_cards=args.cards, n_merchants=args.merchants)
    base = AttackRates()
    rates = AttackRates(
        card_testing=base.card_testing * args.attack_scale,
        account_takeover=base.account_takeover * args.attack_scale,
        bust_out=base.bust_out * args.attack_scale,
        other=base.other,
    )
    return attacks.make_history(
        pop, args.days, seed=args.seed, start_ms=START_MS, rates=rates,
        attacks_from_day=args.days - 1,
    )  # fmt: skip


def burst_reactions(
    h: History, flagged: npt.NDArray[np.bool_], day: npt.NDArray[np.bool_]
) -> dict[str, Any]:
    """Per card-testing burst on the counted day: caught by its fifth transaction, and the
    transaction (1-based) of its first flag."""
    rows = np.flatnonzero(h.kind_of("card_testing") & day)
    firsts: list[int | None] = []
    for attack in np.unique(h.attack_ids[rows]).tolist():
        burst = rows[h.attack_ids[rows] == attack]
        burst = burst[np.argsort(h.attack_index[burst], kind="stable")]
        hits = np.flatnonzero(flagged[burst])
        firsts.append(int(h.attack_index[burst[hits[0]]]) + 1 if hits.size else None)
    reacted = [f for f in firsts if f is not None]
    early = sum(f <= CAUGHT_BY for f in reacted)
    quartiles = np.percentile(reacted, [25, 50, 75]).tolist() if reacted else None
    return {
        "bursts": len(firsts),
        f"caught_by_{CAUGHT_BY}th": round(early / max(len(firsts), 1), 4),
        "first_flag_median": quartiles[1] if quartiles else None,
        "first_flag_quartiles": [quartiles[0], quartiles[2]] if quartiles else None,
        "never_flagged": len(firsts) - len(reacted),
    }


def evaluate(
    h: History, matrix: npt.NDArray[np.float32], spec: str, models: Path
) -> dict[str, Any]:
    """One version's figures on the counted day."""
    model = load_model(spec, models)
    scores = Scorer(model).score(matrix)
    thresholds = model.metadata.thresholds
    decisions = decide(scores, thresholds.review, thresholds.decline)
    flagged = decisions > 0
    times = np.array([e["event_time"] for e in h.events], dtype=np.int64)
    day = times >= START_MS + (h.days - 1) * DAY_MS
    by_kind = {
        kind: {
            "events": int((h.kind_of(kind) & day).sum()),
            "flagged": round(float(flagged[h.kind_of(kind) & day].mean()), 4),
        }
        for kind in attacks.KINDS
    }
    normal = h.kind_of("normal") & day
    return {
        "model": spec,
        "sha256": model.metadata.sha256,
        "thresholds": {"review": thresholds.review, "decline": thresholds.decline},
        "by_kind": by_kind,
        "card_testing": burst_reactions(h, flagged, day),
        "normal": {
            "review": round(float((decisions[normal] == 1).mean()), 5),
            "decline": round(float((decisions[normal] == 2).mean()), 5),
            "flagged": round(float(flagged[normal].mean()), 5),
        },
    }


def markdown(results: list[dict[str, Any]]) -> str:
    """The table docs/features.md shows."""
    head = "| | " + " | ".join(r["model"] for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]

    def row(label: str, cell: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in results) + " |")

    for kind in attacks.KINDS[1:]:
        n = results[0]["by_kind"][kind]["events"]
        row(
            f"{kind} transactions flagged (n={n})",
            lambda r, k=kind: f"{r['by_kind'][k]['flagged']:.1%}",
        )
    ct = f"caught_by_{CAUGHT_BY}th"
    bursts = results[0]["card_testing"]["bursts"]
    row(
        f"card-testing bursts caught by their {CAUGHT_BY}th transaction (n={bursts})",
        lambda r: f"{r['card_testing'][ct]:.1%}",
    )
    row(
        "transaction of a burst first flagged (median)",
        lambda r: str(r["card_testing"]["first_flag_median"]),
    )
    row("bursts never flagged", lambda r: str(r["card_testing"]["never_flagged"]))
    n = results[0]["by_kind"]["normal"]["events"]
    row(
        f"normal traffic flagged, REVIEW + DECLINE (n={n})",
        lambda r: f"{r['normal']['flagged']:.2%}",
    )
    row("normal traffic declined", lambda r: f"{r['normal']['decline']:.2%}")
    return "\n".join(lines)  # fmt: skip


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    h = held_out(args)
    card, merchant = history_features.snapshot_rows(h.population, h.events, START_MS)
    results = []
    for version in args.versions:
        spec = f"{args.name}@{version}"
        names = load_model(spec, args.models).metadata.feature_names
        matrix = history_features.feature_matrix(h.events, card, merchant, names)
        results.append(evaluate(h, matrix, spec, args.models))
    report = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "command": "PYTHONPATH=. .venv/bin/python bench/detection.py",
        "history": {
            "pop_seed": args.pop_seed, "cards": args.cards, "merchants": args.merchants,
            "seed": args.seed, "days": args.days, "start_ms": START_MS, "events": len(h),
            "counted_day": args.days, "attack_scale": args.attack_scale,
        },
        "results": results,
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.avro is not None:
        write_avro(h, args.avro)
    print(markdown(results))
    return 0


def write_avro(h: History, path: Path) -> None:
    """The history as an Avro container of TransactionEvents (for ``models gate --file``)."""
    import fastavro

    from streamer.codec.schemas import transaction_schema

    with path.open("wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(transaction_schema()), h.events)


if __name__ == "__main__":
    raise SystemExit(main())
