"""``streamer monitor export`` on a real Redis: labelled events to Parquet with the model
inputs the stream logged, and, for events without them, the inputs to rebuild offline."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import redis

from streamer.monitor.labels import Label
from streamer.monitor.loop import label_write, scored_write
from streamer.monitor.records import HOUR_MS
from streamer.monitor.state import JoinState, ScoredWrite
from tests.integration.streamer_proc import REPO, streamer_env

DAY_MS = 86_400_000


def _scored(
    t: str, event_time: int, version: str, features: dict[str, float] | None
) -> dict[str, Any]:
    return {
        "transaction_id": t,
        "event_time": event_time,
        "amount_minor": 1234,
        "currency": "EUR",
        "score": 0.75,
        "decision": "DECLINE",
        "model_name": "fraud-gbt",
        "model_version": version,
        "shadow_score": None,
        "shadow_decision": None,
        "shadow_model_version": None,
        "features": features,
    }


def test_export_writes_logged_inputs_and_names_the_ones_to_rebuild(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    state = JoinState(redis_client, redis_prefix, 120 * DAY_MS)
    logged = {"amount": 12.34, "mcc": 5411.0, "txn_count_1h": 3.0}
    records = [
        _scored("a", now - 3 * HOUR_MS, "2", logged),
        _scored("b", now - 2 * HOUR_MS, "1", None),
        _scored("c", now - 2 * HOUR_MS, "2", None),
        _scored("unlabelled", now - 2 * HOUR_MS, "2", logged),
    ]
    writes = [scored_write(r, state.interner) for r in records]
    state.add_scored([w for w in writes if isinstance(w, ScoredWrite)])
    labels = [
        Label(t, kind, now, "chargebacks")
        for t, kind in (("a", "CHARGEBACK"), ("b", "LEGITIMATE"), ("c", "FRAUD"))
    ]
    state.add_labels([label_write(label, state.interner) for label in labels])

    out = tmp_path / "labelled.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "monitor", "export", "--since", "1d", "--out", str(out)],
        env=streamer_env(
            redis_url=redis_url, redis_key_prefix=redis_prefix, models_dir=str(REPO / "models")
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    rows = {r["transaction_id"]: r for r in table.to_pylist()}
    assert set(rows) == {"a", "b", "c"}, "labelled events only"
    assert rows["a"]["feature.amount"] == np.float32(12.34)
    assert rows["a"]["feature.txn_count_1h"] == 3.0
    assert rows["a"]["is_fraud"]
    assert rows["c"]["is_fraud"]
    assert not rows["b"]["is_fraud"]
    assert rows["a"]["model"] == "fraud-gbt@2"
    assert (rows["a"]["decision"], rows["a"]["score"], rows["a"]["label_source"]) == (
        "DECLINE",
        0.75,
        "chargebacks",
    )
    assert (
        rows["b"]["feature.amount"] is None
        or rows["b"]["feature.amount"] != rows["b"]["feature.amount"]
    )
    assert "2 events have no logged inputs" in done.stdout
    assert "fraud-gbt@1: amount," in done.stdout
    assert "fraud-gbt@2: amount," in done.stdout
    assert b"streamer.rebuild_features" in table.schema.metadata


def test_the_export_trains_the_next_version(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str, tmp_path: Path
) -> None:
    """serve → label → export → retrain: labelled events with the inputs the stream logged
    (the model's whole input vector, as feature logging writes it) exported from a real
    Redis, and ``models/train.py --labelled`` trains a version that loads and verifies.
    Every outcome is labelled here (a maturity feed confirming each genuine event)."""
    from streamer import features
    from streamer.dev.labels import LabelMix, generate_labels
    from streamer.dev.synth import generate_labeled, make_population
    from streamer.model.registry import load_model

    every = LabelMix(fraud_labelled=1.0, disputed=0.0, legitimate_confirmed=1.0)
    now = int(time.time() * 1000)
    batch = generate_labeled(
        make_population(3, 3000, 300), 20_000, seed=9, start_ms=now - 8 * DAY_MS
    )
    x = features.assemble(
        features.event_columns(batch.events),
        batch.card_rows,
        batch.merchant_rows,
        features.FEATURE_NAMES,
    )
    state = JoinState(redis_client, redis_prefix, 120 * DAY_MS)
    records = [
        {
            **_scored(
                e["transaction_id"],
                e["event_time"],
                "2",
                dict(zip(features.FEATURE_NAMES, map(float, row), strict=True)),
            ),
            "amount_minor": e["amount_minor"],
        }
        for e, row in zip(batch.events, x, strict=True)
    ]
    writes = [scored_write(r, state.interner) for r in records]
    state.add_scored([w for w in writes if isinstance(w, ScoredWrite)])
    labels = [
        Label(x["transaction_id"], x["label"], x["label_time"], x["source"])
        for x in generate_labels(batch.events, batch.labels, seed=9, mix=every)
    ]
    state.add_labels([label_write(label, state.interner) for label in labels])

    out = tmp_path / "labelled.parquet"
    env = streamer_env(redis_url=redis_url, redis_key_prefix=redis_prefix)
    export = [
        sys.executable,
        "-m",
        "streamer",
        "monitor",
        "export",
        "--since",
        "9d",
        "--out",
        str(out),
    ]
    done = subprocess.run(export, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "no logged inputs" not in done.stdout
    registry = tmp_path / "models"
    train = [sys.executable, str(REPO / "models" / "train.py"), "--labelled", str(out)]
    train += ["--out", str(registry), "--name", "fraud-gbt", "--trees", "40"]
    done = subprocess.run(train, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{len(labels)} of {len(labels)} labelled events have logged inputs" in done.stderr
    model = load_model("fraud-gbt@1", registry)
    assert model.metadata.feature_names == features.FEATURE_NAMES
    assert model.metadata.training["data"] == "streamer monitor export: labelled.parquet"
