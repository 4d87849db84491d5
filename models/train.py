"""Train the fraud model on synthetic data and register it as ONNX + metadata.

    python models/train.py --out models --name fraud-gbt --seed 7

Each run publishes a NEW version (``models/fraud-gbt/<next>/``, see
``streamer.model.versions.create_version``); released versions are never rewritten, and
``--version`` naming an existing one is refused.

Needs the ``train`` extra (lightgbm, onnxmltools, scikit-learn, onnx); serving never
imports this file. Features come from ``streamer.features.event_columns`` + ``assemble``,
the exact code the consumer runs, so training and serving cannot skew.

Steps: draw a population and labelled events from ``streamer.dev.synth``; replace a few card
and merchant rows with the layout defaults (unknown entities happen in production, and the
model must have seen them); hold out the last 20% by event time; fit LightGBM; floor its
split thresholds to float32 (``float32_thresholds``: the export then decides exactly as
LightGBM does); export with
onnxmltools (``zipmap=False``: a plain ``[n, 2]`` probability tensor); check that ONNX
Runtime agrees with LightGBM within 1e-5; pick thresholds; record drift references (the
held-out scores and every non-calendar input of the training rows, by UTC hour: see
``streamer.model.reference``); write both files; then load them back through
``streamer.model.registry`` and ``streamer.model.scorer`` as the service would.

``--history`` (version 3 on): the data are synthetic card histories with velocity attacks
(``streamer.dev.attacks``: card testing, account takeover, bust-out), and the features of
every event come from ``streamer.dev.history_features``: the snapshot's static fields and
the velocity fields folded by ``enrichment.with_velocity`` over the history in file order,
the definitions the stream and every offline path run. The first ``--warmup-days`` fill
the state and are not trained on; the hold-out is the last 20% of the rest by event time.

Threshold rule (on held-out data):
- decline: the lowest score from which precision stays at least ``--decline-precision``
  (0.90) for every higher threshold: declines must be nearly always right.
- review: the highest score that still puts ``--review-recall`` (0.80) of fraud at or above
  it, but never flagging more than ``--review-budget`` (3%) of traffic, and never above decline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnxmltools
from onnxmltools.convert.common.data_types import FloatTensorType
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from streamer import features
from streamer.dev import attacks, history_features, synth
from streamer.model.reference import CALENDAR_FEATURES, SCORE_QUANTILES, reference_histogram
from streamer.model.registry import load_model
from streamer.model.scorer import Scorer
from streamer.model.versions import create_version, next_version

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: fixed, so runs are reproducible
INPUT_NAME = "features"
EXPLAINER_FILE = "explainer.txt"  # LightGBM's own model text: reason codes' contributions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="registry directory")
    parser.add_argument("--name", default="fraud-gbt")
    parser.add_argument("--version", default=None, help="default: the next free version")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--cards", type=int, default=None, help="default 20,000 (10,000 --history)")
    parser.add_argument(
        "--merchants", type=int, default=None, help="default 2,000 (1,000 --history)"
    )
    parser.add_argument(
        "--history",
        action="store_true",
        help="train on synthetic histories with velocity attacks (streamer.dev.attacks), the "
        "velocity features folded by the stream's own definitions (streamer.dev.history_features)",
    )
    parser.add_argument("--days", type=int, default=14, help="--history: days of history")
    parser.add_argument(
        "--warmup-days",
        type=int,
        default=7,
        help="--history: leading days folded into the state but not trained or evaluated on",
    )
    parser.add_argument("--trees", type=int, default=150)
    parser.add_argument("--leaves", type=int, default=31)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--missing-card-rate", type=float, default=0.03)
    parser.add_argument("--missing-merchant-rate", type=float, default=0.01)
    parser.add_argument("--decline-precision", type=float, default=0.90)
    parser.add_argument("--review-recall", type=float, default=0.80)
    parser.add_argument("--review-budget", type=float, default=0.03)
    parser.add_argument(
        "--shuffle-labels",
        action="store_true",
        help="train on shuffled labels (held-out metrics use the true ones): a deliberately "
        "useless model, to see the promotion gate refuse it",
    )
    parser.add_argument(
        "--labelled",
        type=Path,
        default=None,
        metavar="PARQUET",
        help="train on the labelled events `streamer monitor export` wrote (the inputs the "
        "stream logged, is_fraud, event time) instead of synthetic data",
    )
    parser.add_argument(
        "--register",
        nargs="?",
        const="",
        default=None,
        metavar="NAME",
        help="also register the new version in MLflow (MLFLOW_TRACKING_URI), under NAME "
        "(default: --name); needs the mlflow extra",
    )
    args = parser.parse_args(argv)
    args.cards = args.cards or (10_000 if args.history else 20_000)
    args.merchants = args.merchants or (1_000 if args.history else 2_000)
    return args


def build_dataset(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X float32, y int8, event time ms) with a share of entities replaced by defaults."""
    pop = synth.make_population(args.seed, n_cards=args.cards, n_merchants=args.merchants)
    data = synth.generate_labeled(pop, args.events, seed=args.seed, start_ms=START_MS)
    rng = np.random.default_rng([args.seed, 99])
    card, merchant = data.card_rows.copy(), data.merchant_rows.copy()
    card[rng.random(len(card)) < args.missing_card_rate] = features.CARD_DEFAULTS
    merchant[rng.random(len(merchant)) < args.missing_merchant_rate] = features.MERCHANT_DEFAULTS
    cols = features.event_columns(data.events)
    x = features.assemble(cols, card, merchant, features.FEATURE_NAMES)
    return x, data.labels, cols.event_time_ms


def build_history_dataset(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X float32, y int8, event time ms) of a synthetic history with attacks, through the
    stream's feature definitions; a share of cards and merchants is missing from the
    snapshot (their static fields take the defaults, as the cache serves them; velocity
    still comes from their own events). Rows of the warm-up days are left out."""
    pop = synth.make_population(args.seed, n_cards=args.cards, n_merchants=args.merchants)
    history = attacks.make_history(pop, args.days, seed=args.seed, start_ms=START_MS)
    cards, merchants = history_features.snapshot_tables(pop, START_MS)
    rng = np.random.default_rng([args.seed, 99])
    cards[rng.random(len(cards)) < args.missing_card_rate] = features.CARD_DEFAULTS
    merchants[rng.random(len(merchants)) < args.missing_merchant_rate] = features.MERCHANT_DEFAULTS
    card_at = {card: i for i, card in enumerate(pop.card_ids)}
    merchant_at = {merchant: i for i, merchant in enumerate(pop.merchant_ids)}
    card_rows = cards[[card_at[e["card_id"]] for e in history.events]]
    merchant_rows = merchants[[merchant_at[e["merchant_id"]] for e in history.events]]
    x = history_features.feature_matrix(history.events, card_rows, merchant_rows)
    t_ms = np.array([e["event_time"] for e in history.events], dtype=np.int64)
    kept = t_ms >= START_MS + args.warmup_days * 86_400_000
    return x[kept], history.labels[kept], t_ms[kept]


def build_labelled_dataset(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X float32, y int8, event time ms) from ``streamer monitor export``: the inputs the
    stream logged for each labelled event (``feature.<name>`` columns), in the model's
    order. Rows without logged inputs (feature logging was off) are left out; the export
    named the inputs to rebuild offline for them."""
    import pyarrow.parquet as pq

    table = pq.read_table(args.labelled)
    columns = [f"feature.{name}" for name in features.FEATURE_NAMES]
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise SystemExit(
            f"{args.labelled} has no logged {len(missing)} model inputs ({missing[0]}, …): "
            "export events scored with STREAMER_FEATURE_LOGGING=true, or rebuild the inputs "
            "offline (streamer features build)"
        )
    x = np.column_stack([table[c].to_numpy(zero_copy_only=False) for c in columns])
    kept = ~np.isnan(x).any(axis=1)
    y = table["is_fraud"].to_numpy(zero_copy_only=False).astype(np.int8)
    t_ms = table["event_time_ms"].to_numpy(zero_copy_only=False).astype(np.int64)
    print(f"{int(kept.sum())} of {len(kept)} labelled events have logged inputs", file=sys.stderr)
    if not kept.any() or len(np.unique(y[kept])) < 2:
        raise SystemExit(f"{args.labelled}: need logged inputs of both fraud and genuine events")
    return x[kept].astype(np.float32), y[kept], t_ms[kept]


def pick_thresholds(
    y: np.ndarray, scores: np.ndarray, args: argparse.Namespace
) -> dict[str, float]:
    precision, recall, cuts = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]  # align with cuts
    # Lowest cut from which precision never drops below the target again.
    tail_min = np.minimum.accumulate(precision[::-1])[::-1]
    ok = np.flatnonzero(tail_min >= args.decline_precision)
    decline = float(cuts[ok[0]]) if ok.size else 1.0
    review = float(cuts[np.flatnonzero(recall >= args.review_recall)[-1]])
    review = max(review, float(np.quantile(scores, 1.0 - args.review_budget)))
    return {"review": round(min(review, decline), 6), "decline": round(decline, 6)}


def reference_histogram_legacy(scores: np.ndarray) -> dict[str, list[Any]]:
    """Quantile bins (finer in the tail) of held-out scores, for drift checks such as PSI."""
    inner = np.quantile(scores, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999])
    edges = np.unique(np.concatenate([[0.0], np.round(inner, 8), [1.0]]))
    counts, _ = np.histogram(scores, bins=edges)
    return {"bin_edges": edges.tolist(), "counts": counts.astype(int).tolist()}


def rates(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = scores >= threshold
    hits = int((flagged & (y == 1)).sum())
    return {
        "precision": hits / max(int(flagged.sum()), 1),
        "recall": hits / max(int(y.sum()), 1),
        "flag_rate": float(flagged.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    version = args.version or next_version(args.out / args.name)
    if (args.out / args.name / version).exists():
        raise SystemExit(f"{args.out / args.name / version} exists and versions are immutable; "
                         "leave --version out to train the next one")  # fmt: skip
    builder = build_history_dataset if args.history else build_dataset
    x, y, t_ms = (build_labelled_dataset if args.labelled else builder)(args)
    cut = int(np.quantile(t_ms, 0.8))
    train, test = t_ms < cut, t_ms >= cut
    labels, graph = training_labels(args, y, train), f"{args.name}-{version}"
    params, onnx_model, scores, explainer_text = fit_and_export(args, graph, x, labels, train, test)
    onnx_bytes = onnx_model.SerializeToString()
    thresholds = pick_thresholds(y[test], scores, args)
    metrics = evaluate(y, scores, train, test, thresholds)
    references = {
        "reference_scores": reference_histogram_legacy(scores),
        "reference_score": reference_histogram(
            scores, t_ms[test], quantiles=SCORE_QUANTILES
        ).model_dump(),
        "reference_features": {
            name: reference_histogram(x[train][:, j], t_ms[train]).model_dump()
            for j, name in enumerate(features.FEATURE_NAMES)
            if name not in CALENDAR_FEATURES
        },
    }

    def write(version_dir: Path, version: str) -> None:
        metadata = describe(args, version, onnx_bytes, onnx_model, params, thresholds, metrics)
        metadata.update(references)
        metadata["explainer"] = explainer_record(explainer_text)
        (version_dir / "model.onnx").write_bytes(onnx_bytes)
        (version_dir / EXPLAINER_FILE).write_text(explainer_text, encoding="utf-8")
        (version_dir / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")

    version_dir = create_version(args.out, args.name, write, version=version)

    # Load it back the way the service does: any mismatch fails here, not in production.
    scorer = Scorer(load_model(str(version_dir), args.out))
    served = scorer.score(x[test][:4096])
    assert np.allclose(served, scores[:4096], atol=1e-6), "registry round trip changed scores"
    summary = {
        "path": str(version_dir),
        "thresholds": thresholds,
        "metrics": metrics,
        "onnx_bytes": len(onnx_bytes),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.register is not None:
        summary["registered"] = register_in_mlflow(version_dir, args.register or args.name)
    print(json.dumps(summary, indent=2))
    return 0


def training_labels(args: argparse.Namespace, y: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The labels the model learns from: the true ones, or (--shuffle-labels) the training
    rows' labels shuffled, while held-out metrics keep the true ones."""
    if not args.shuffle_labels:
        return y
    shuffled = y.copy()
    shuffled[train] = np.random.default_rng([args.seed, 7]).permutation(y[train])
    return shuffled


def register_in_mlflow(version_dir: Path, name: str) -> str:
    """A new MLflow model version of ``version_dir`` (needs the mlflow extra)."""
    from streamer.model.mlflow_publish import register

    registered = register(version_dir, name=name)
    return f"models:/{registered.name}/{registered.version}"


def fit_and_export(
    args: argparse.Namespace,
    graph_name: str,
    x: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
) -> tuple[dict[str, Any], Any, np.ndarray, str]:
    """(LightGBM parameters, the canonical ONNX model, its held-out scores checked against
    LightGBM's, LightGBM's own model text: the explainer, the same trees as the ONNX)."""
    params: dict[str, Any] = {
        "n_estimators": args.trees,
        "num_leaves": args.leaves,
        "learning_rate": args.learning_rate,
        "min_child_samples": 50,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
        "random_state": args.seed,
        "n_jobs": 2,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }
    model = lgb.LGBMClassifier(**params)
    model.fit(x[train], y[train])
    # The converter rounds each threshold to the nearest float32; the exact float32 form
    # of the same trees is what both LightGBM (the explainer) and the ONNX file hold.
    model._Booster = lgb.Booster(model_str=float32_thresholds(model.booster_.model_to_string()))
    expected = np.asarray(model.predict_proba(x[test]))[:, 1]
    onnx_model = onnxmltools.convert_lightgbm(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, x.shape[1]]))],
        zipmap=False,
        target_opset=15,
    )
    canonicalize(onnx_model, graph_name)
    output_names = [o.name for o in onnx_model.graph.output]
    probability_output = next(n for n in output_names if "prob" in n)
    scores = check_parity(onnx_model.SerializeToString(), x[test], expected, probability_output)
    return params, onnx_model, scores, model.booster_.model_to_string()


def float32_thresholds(model_text: str) -> str:
    """The same trees with every numerical split's threshold ``t`` replaced by the largest
    float32 not above it. Inputs reach the model as float32, and for every float32 ``x``,
    ``x <= t`` exactly when ``x <= floor32(t)``: LightGBM's decisions do not change, and the
    ONNX export (float32 thresholds) then takes the same branch on every input. Rounding to
    nearest instead sends an input between ``t`` and a threshold rounded up the other way.
    ``tree_sizes`` is dropped; LightGBM parses tree by tree without it."""
    header, *trees = model_text.split("\nTree=")
    fixed = [_floor_thresholds(tree) for tree in trees]
    lines = "\nTree=".join([header, *fixed]).split("\n")
    return "\n".join(line for line in lines if not line.startswith("tree_sizes="))


def _floor_thresholds(tree: str) -> str:
    lines = tree.split("\n")
    types = next(_values(line) for line in lines if line.startswith("decision_type="))
    for i, line in enumerate(lines):
        if line.startswith("threshold="):
            values = _values(line)
            lines[i] = "threshold=" + " ".join(
                value if int(kind) & 1 else repr(_floor32(float(value)))  # bit 0: categorical
                for value, kind in zip(values, types, strict=True)
            )
    return "\n".join(lines)


def _values(line: str) -> list[str]:
    return line.split("=", 1)[1].split()


def _floor32(t: float) -> float:
    f = np.float32(t)
    if float(f) > t:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)


def explainer_record(text: str) -> dict[str, str]:
    """metadata.json's ``explainer``: the LightGBM model text (exact TreeSHAP contributions
    with ``pred_contrib``, see ``streamer.model.explainer``) and its sha256, verified at load."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return {"file": EXPLAINER_FILE, "format": "lightgbm-text", "sha256": digest}


def evaluate(
    y: np.ndarray,
    scores: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    thresholds: dict[str, float],
) -> dict[str, float]:
    """Held-out metrics, and precision / recall / flag rate at each threshold."""
    y_test = y[test]
    return {
        "roc_auc": float(roc_auc_score(y_test, scores)),
        "pr_auc": float(average_precision_score(y_test, scores)),
        "holdout_events": int(test.sum()),
        "holdout_fraud_rate": float(y_test.mean()),
        "train_events": int(train.sum()),
        "train_fraud_rate": float(y[train].mean()),
        **{f"review_{k}": v for k, v in rates(y_test, scores, thresholds["review"]).items()},
        **{f"decline_{k}": v for k, v in rates(y_test, scores, thresholds["decline"]).items()},
    }


def describe(
    args: argparse.Namespace,
    version: str,
    onnx_bytes: bytes,
    onnx_model: Any,
    params: dict[str, Any],
    thresholds: dict[str, float],
    metrics: dict[str, float],
) -> dict[str, Any]:
    """The metadata.json fields that describe the model (references are added by main)."""
    output_names = [o.name for o in onnx_model.graph.output]
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    created = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return {
        "format_version": 1,
        "name": args.name,
        "version": version,
        "created_at": created.isoformat(timespec="seconds"),
        "framework": f"lightgbm {lgb.__version__} -> onnxmltools {onnxmltools.__version__}",
        "feature_names": list(features.FEATURE_NAMES),
        "card_defaults": dict(
            zip(features.CARD_FIELDS, features.CARD_DEFAULTS.tolist(), strict=True)
        ),
        "merchant_defaults": dict(
            zip(features.MERCHANT_FIELDS, features.MERCHANT_DEFAULTS.tolist(), strict=True)
        ),
        "thresholds": thresholds,
        "metrics": {k: round(v, 6) for k, v in metrics.items()},
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "input_name": INPUT_NAME,
        "input_shape": [None, len(features.FEATURE_NAMES)],
        "output_names": output_names,
        "probability_output": next(n for n in output_names if "prob" in n),
        "training": training_record(args, params),
        "seed": args.seed,
    }


def training_record(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    """How the version was trained: enough to reproduce it."""
    return {
        "algorithm": "LightGBM gradient-boosted trees",
        "params": params,
        **(
            {
                "data": "streamer.dev.attacks histories; features by streamer.dev.history_features",
                "days": args.days,
                "warmup_days": args.warmup_days,
                "attack_rates": asdict(attacks.AttackRates()),
            }
            if args.history
            else {"data": f"streamer monitor export: {args.labelled.name}"}
            if args.labelled
            else {"data": "streamer.dev.synth", "events": args.events}
        ),
        "cards": args.cards,
        "merchants": args.merchants,
        "start_ms": START_MS,
        "holdout": "last 20% by event time",
        "missing_card_rate": args.missing_card_rate,
        "missing_merchant_rate": args.missing_merchant_rate,
        "threshold_rule": {
            "decline_precision": args.decline_precision,
            "review_recall": args.review_recall,
            "review_budget": args.review_budget,
        },
        **({"shuffled_labels": True} if args.shuffle_labels else {}),
    }


def canonicalize(onnx_model: Any, graph_name: str) -> None:
    """Make the export byte-for-byte reproducible: onnxmltools names the graph with a random
    uuid and lists opset imports in set order."""
    onnx_model.graph.name = graph_name
    imports = sorted((o.domain, o.version) for o in onnx_model.opset_import)
    del onnx_model.opset_import[:]
    for domain, version in imports:
        onnx_model.opset_import.add(domain=domain, version=version)


def check_parity(onnx_bytes: bytes, x: np.ndarray, expected: np.ndarray, output: str) -> np.ndarray:
    """ONNX Runtime's P(fraud) for ``x``; exits when it differs from LightGBM by more than 1e-5."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run([output], {INPUT_NAME: np.ascontiguousarray(x, np.float32)})
    scores = np.asarray(probabilities)[:, 1].astype(np.float64)
    worst = float(np.max(np.abs(scores - expected)))
    print(f"ONNX vs LightGBM: max |diff| = {worst:.2e} over {len(x)} rows", file=sys.stderr)
    if worst > 1e-5:
        raise SystemExit(f"ONNX export disagrees with LightGBM by {worst:.2e} (> 1e-5)")
    return scores


if __name__ == "__main__":
    raise SystemExit(main())
