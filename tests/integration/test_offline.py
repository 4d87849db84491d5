"""Batch deployment: an Avro file in, an Avro file of scores out, with the stream's code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fastavro
import numpy as np
import onnxruntime as ort
import redis

from streamer.dev.synth import generate_events, make_population
from streamer.features.engineering import assemble, event_columns
from streamer.features.layout import CARD_FIELDS, MERCHANT_FIELDS, card_key, merchant_key
from streamer.features.velocity import fold, overlay
from streamer.model.registry import load_model
from tests.integration.streamer_proc import (
    REPO,
    load_synthetic_features,
    plain_schema,
    streamer_env,
)


def test_score_file_matches_a_direct_model_run_and_rejects_invalid_rows(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str, tmp_path: Path
) -> None:
    load_synthetic_features(redis_url, redis_prefix)
    events = generate_events(
        make_population(7, 3000, 300), 4000, seed=21, start_ms=1_764_000_000_000
    )
    bad = [
        dict(events[0], transaction_id="bad-currency", currency="XXQ"),
        dict(events[1], transaction_id="bad-amount", amount_minor=0),
    ]
    source, target = tmp_path / "in.avro", tmp_path / "out.avro"
    with source.open("wb") as out:  # written by plain fastavro, as any Avro writer would
        fastavro.writer(
            out, plain_schema("transaction_event"), [*events[:2000], *bad, *events[2000:]]
        )

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer",
            "score-file",
            str(source),
            str(target),
            "--redis-url",
            redis_url,
            "--prefix",
            redis_prefix,
            "--chunk",
            "1000",
        ],
        env=streamer_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "4002 read, 4000 scored" in result.stderr

    with target.open("rb") as f:
        scored = list(fastavro.reader(f, reader_schema=plain_schema("scored_event")))
    assert [s["transaction_id"] for s in scored] == [e["transaction_id"] for e in events]
    assert {s["feature_status"] for s in scored} == {"COMPLETE"}
    rejects = [
        json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()
    ]
    assert [(r["row"], r["error_class"]) for r in rejects] == [
        (2000, "UnknownCurrency"),
        (2001, "AmountNotPositive"),
    ]

    meta = json.loads((REPO / "models" / "fraud-gbt" / "1" / "metadata.json").read_text())
    card = np.stack(
        [
            np.frombuffer(redis_client.get(card_key(redis_prefix, e["card_id"])), "<f8")
            for e in events
        ]
    )
    merchant = np.stack(
        [
            np.frombuffer(redis_client.get(merchant_key(redis_prefix, e["merchant_id"])), "<f8")
            for e in events
        ]
    )
    assert card.shape[1] == len(CARD_FIELDS)
    assert merchant.shape[1] == len(MERCHANT_FIELDS)
    columns = event_columns(events)
    # score-file folds the file's own history (its order stands for the partition's):
    # the velocity fields come from the one definition, over the events in file order.
    velocity = fold(
        {},
        [e["card_id"] for e in events],
        [e["transaction_id"] for e in events],
        list(range(len(events))),
        columns.event_time_ms,
        columns.amount,
        [e["merchant_id"] for e in events],
        columns.merchant_country,
    )
    defaults = load_model("fraud-gbt@1", REPO / "models").card_defaults
    card = overlay(card, velocity.values, defaults)
    matrix = assemble(columns, card, merchant, meta["feature_names"])
    session = ort.InferenceSession(str(REPO / "models" / "fraud-gbt" / "1" / "model.onnx"))
    expected = session.run([meta["probability_output"]], {meta["input_name"]: matrix})[0][:, 1]
    np.testing.assert_allclose([s["score"] for s in scored], expected, rtol=0, atol=1e-6)


def test_score_file_refuses_a_file_that_is_not_avro(tmp_path: Path) -> None:
    source = tmp_path / "in.avro"
    source.write_bytes(b"definitely not avro")
    result = subprocess.run(
        [sys.executable, "-m", "streamer", "score-file", str(source), str(tmp_path / "out.avro")],
        env=streamer_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("streamer: ")
    assert "Traceback" not in result.stderr


def test_score_file_stops_rather_than_score_a_backfill_with_defaults(tmp_path: Path) -> None:
    events = generate_events(make_population(7, 100, 10), 50, seed=1, start_ms=1_764_000_000_000)
    source = tmp_path / "in.avro"
    with source.open("wb") as out:
        fastavro.writer(out, plain_schema("transaction_event"), events)
    args = [
        sys.executable,
        "-m",
        "streamer",
        "score-file",
        str(source),
        str(tmp_path / "out.avro"),
        "--redis-url",
        "redis://127.0.0.1:9/0",
    ]

    refused = subprocess.run(
        args, env=streamer_env(), capture_output=True, text=True, timeout=60, check=False
    )
    allowed = subprocess.run(
        [*args, "--allow-degraded"],
        env=streamer_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert refused.returncode == 3
    assert "STREAMER_REDIS_URL" in refused.stderr
    assert allowed.returncode == 0, allowed.stderr
    assert "50 scored" in allowed.stderr
    assert "50 degraded" in allowed.stderr
