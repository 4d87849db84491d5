"""Helpers for the monitor's end-to-end tests: synthetic events scored by real models
(ONNX Runtime on the features the synthetic population holds for each event), their
labels, producing both, running ``streamer monitor`` as a process, and the reference
figures scikit-learn computes from the same data."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from confluent_kafka import Producer
from sklearn.metrics import average_precision_score, roc_auc_score

from streamer.codec.schemas import scored_schema
from streamer.codec.wire import make_encoder
from streamer.dev.labels import generate_labels
from streamer.dev.synth import generate_labeled, make_population
from streamer.features.engineering import assemble, event_columns
from streamer.monitor.labels import label_schema
from tests.integration.streamer_proc import REPO, streamer_env

V1, V2 = REPO / "models" / "fraud-gbt" / "1", REPO / "models" / "fraud-gbt" / "2"
SHUFFLED = REPO / "tests" / "fixtures" / "models" / "fraud-gbt-shuffled" / "1"


@dataclass(frozen=True)
class Model:
    """A model version directory and the version the scored events say scored them."""

    path: Path
    version: str


def _scores(model: Path, batch: Any) -> tuple[np.ndarray, dict[str, float]]:
    meta = json.loads((model / "metadata.json").read_text())
    matrix = assemble(
        event_columns(batch.events), batch.card_rows, batch.merchant_rows, meta["feature_names"]
    )
    session = ort.InferenceSession(str(model / "model.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: matrix})
    probabilities = next(o for o in outputs if getattr(o, "ndim", 0) == 2)
    return np.asarray(probabilities[:, 1], dtype=np.float32), meta["thresholds"]


def _decide(score: float, thresholds: dict[str, float]) -> str:
    if score >= thresholds["decline"]:
        return "DECLINE"
    return "REVIEW" if score >= thresholds["review"] else "APPROVE"


@dataclass
class Served:
    """Scored events as the stream would have published them, and the labels to come."""

    scored: list[dict[str, Any]]
    labels: list[dict[str, Any]]


def serve(
    n: int,
    *,
    seed: int,
    start_ms: int,
    champions: list[tuple[Model, float]],
    shadow: Model | None = None,
) -> Served:
    """``n`` synthetic events over the 7 days from ``start_ms``; ``champions`` lists
    (model, share of events in time order) so a version can be swapped in mid-stream."""
    batch = generate_labeled(make_population(7, 3000, 300), n, seed=seed, start_ms=start_ms)
    scored_by = [(_scores(m.path, batch), m.version) for m, _ in champions]
    bounds = np.cumsum([int(share * n) for _, share in champions])
    shadow_scores = _scores(shadow.path, batch) if shadow else None
    out = []
    for i, event in enumerate(batch.events):
        k = min(int(np.searchsorted(bounds, i, side="right")), len(champions) - 1)
        (scores, thresholds), version = scored_by[k]
        record = {
            **{f: event[f] for f in ("transaction_id", "card_id", "merchant_id")},
            **{f: event[f] for f in ("amount_minor", "currency", "event_time")},
            "score": float(scores[i]),
            "decision": _decide(float(scores[i]), thresholds),
            "review_threshold": thresholds["review"],
            "decline_threshold": thresholds["decline"],
            "model_name": "fraud-gbt",
            "model_version": version,
            "feature_status": "COMPLETE",
            "received_time": event["event_time"],
            "scored_time": event["event_time"],
            "publish_time": event["event_time"],
            "processing_latency_ms": 1.0,
            "source_partition": 0,
            "source_offset": i,
            "shadow_score": None,
            "shadow_decision": None,
            "shadow_model_version": None,
        }
        if shadow_scores is not None and shadow is not None:
            s = float(shadow_scores[0][i])
            record |= {
                "shadow_score": s,
                "shadow_decision": _decide(s, shadow_scores[1]),
                "shadow_model_version": shadow.version,
            }
        out.append(record)
    return Served(out, generate_labels(batch.events, batch.labels, seed=seed))


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]], schema: str) -> None:
    """``records`` (``scored`` or ``label``) single-object encoded, keyed by card id."""
    encoder = make_encoder(
        "single-object", schema=scored_schema() if schema == "scored" else label_schema()
    )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for record in records:
        while True:
            try:
                producer.produce(topic, encoder.encode(record), record["card_id"])
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


def start_monitor(log: Path, *args: str, **settings: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamer", "monitor", "run", *args],
        env=streamer_env(**settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def report(since_ms: int, until_ms: int, **settings: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer",
            "monitor",
            "report",
            "--json",
            "--since",
            str(since_ms),
            "--until",
            str(until_ms),
        ],
        env=streamer_env(**settings),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def reference(
    scored: list[dict[str, Any]], labels: list[dict[str, Any]], role: str = "champion"
) -> dict[str, dict[str, Any]]:
    """scikit-learn's figures per model version: first label per transaction, events
    both scored and labelled (what the monitor must compute)."""
    first: dict[str, str] = {}
    for label in labels:
        first.setdefault(label["transaction_id"], label["label"])
    prefix = "shadow_" if role == "shadow" else ""
    rows: dict[str, list[tuple[bool, float, str]]] = {}
    for s in scored:
        version = s[f"{prefix}model_version"]
        if s["transaction_id"] in first and version is not None:
            fraud = first[s["transaction_id"]] != "LEGITIMATE"
            rows.setdefault(version, []).append(
                (fraud, s[f"{prefix}score"], s[f"{prefix}decision"])
            )
    out = {}
    for version, data in rows.items():
        y = np.array([r[0] for r in data])
        score = np.array([r[1] for r in data], dtype=np.float32)
        flagged = np.array([r[2] != "APPROVE" for r in data])
        out[version] = {
            "labelled": len(data),
            "fraud": int(y.sum()),
            "flagged_fraud": int((y & flagged).sum()),
            "flagged_legitimate": int((~y & flagged).sum()),
            "missed_fraud": int((y & ~flagged).sum()),
            "roc_auc": roc_auc_score(y, score),
            "pr_auc": average_precision_score(y, score),
        }
    return out
