"""Shadow scoring in the stream, on the real broker and Redis with ``streamer run`` as a
process: every scored event carries the shadow's score, decision and version, the score
equals a direct ONNX Runtime run of the shadow model on the same features (rebuilt from
Redis key by key, not through streamer's cache), and ``/metrics`` counts agreement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import redis

from streamer.dev.devstack.processes import free_port
from streamer.dev.generator import send_synthetic
from streamer.features.engineering import assemble, event_columns
from streamer.features.layout import CARD_FIELDS, MERCHANT_FIELDS, card_key, merchant_key
from tests.integration.streamer_proc import (
    decode_single_object,
    http_get,
    load_synthetic_features,
    plain_schema,
    read_all,
    start_streamer,
    stop,
    wait_caught_up,
)
from tests.integration.swap_helpers import CARDS, MERCHANTS, add_challenger, private_registry

N = 3000


def _direct_scores(
    version_dir: Path, events: list[dict[str, Any]], client: redis.Redis, prefix: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """The model in ``version_dir`` run directly by ONNX Runtime on features read key by key."""
    meta = json.loads((version_dir / "metadata.json").read_text())

    def rows(keys: list[str], fields: tuple[str, ...]) -> np.ndarray:
        blobs = [client.get(k) for k in keys]
        assert all(b is not None for b in blobs), "every entity is in Redis in this test"
        return np.stack([np.frombuffer(b, dtype="<f8") for b in blobs if b is not None])

    card = rows([card_key(prefix, e["card_id"]) for e in events], CARD_FIELDS)
    merchant = rows([merchant_key(prefix, e["merchant_id"]) for e in events], MERCHANT_FIELDS)
    matrix = assemble(event_columns(events), card, merchant, meta["feature_names"])
    session = ort.InferenceSession(
        str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    outputs = session.run(None, {session.get_inputs()[0].name: matrix})
    probabilities = next(o for o in outputs if getattr(o, "ndim", 0) == 2)
    return np.asarray(probabilities[:, 1], dtype=np.float64), meta


def _decisions(scores: np.ndarray, thresholds: dict[str, float]) -> list[str]:
    review, decline = thresholds["review"], thresholds["decline"]
    return np.where(
        scores >= decline, "DECLINE", np.where(scores >= review, "REVIEW", "APPROVE")
    ).tolist()


def _agreement(port: int, version: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    return {
        s.labels["agreement"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "streamer_shadow_decisions_total" and s.labels["shadow_version"] == version
    }


def _run_with_shadow(
    bootstrap: str, topics: dict[str, str], group: str, settings: dict[str, str], log: Path
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, float]]:
    """N events scored by a streamer: (inputs by id, outputs by id, /metrics agreement)."""
    send_synthetic(
        topic=topics["input_topic"],
        bootstrap_servers=bootstrap,
        count=N,
        n_cards=CARDS,
        n_merchants=MERCHANTS,
        event_seed=41,
    )
    proc = start_streamer(log, **settings)
    try:
        wait_caught_up(bootstrap, group, topics["input_topic"], 180, proc)
        agreement = _agreement(int(settings["metrics_port"]), settings["shadow_model"][-1])
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    txn, scored = plain_schema("transaction_event"), plain_schema("scored_event")
    inputs = [
        decode_single_object(m.value(), txn) for m in read_all(bootstrap, topics["input_topic"], N)
    ]
    outputs = [
        decode_single_object(m.value(), scored)
        for m in read_all(bootstrap, topics["output_topic"], N)
    ]
    return (
        {e["transaction_id"]: e for e in inputs},
        sorted(outputs, key=lambda r: r["transaction_id"]),
        agreement,
    )


@pytest.mark.parametrize(
    "shadow",
    [
        pytest.param("1", id="same-trees-as-the-champion"),
        pytest.param("3", id="a-challenger-that-scores-differently"),
    ],
)
def test_shadow_in_the_stream_equals_a_direct_onnx_run(
    shadow: str,
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
    redis_prefix: str,
    topics: dict[str, str],
    group_id: str,
    tmp_path: Path,
    run_settings: dict[str, str],
) -> None:
    models_dir = private_registry(tmp_path)
    if shadow == "3":
        add_challenger(models_dir, "3")
    load_synthetic_features(redis_url, redis_prefix)
    settings = {
        **run_settings,
        "models_dir": str(models_dir),
        "model": "fraud-gbt@2",
        "shadow_model": f"fraud-gbt@{shadow}",
        "metrics_port": str(free_port()),
        # The direct run below reads the snapshot; velocity parity has its own tests.
        "velocity_state": "false",
    }
    inputs, outputs, agreement = _run_with_shadow(
        kafka_bootstrap, topics, group_id, settings, tmp_path / "streamer.log"
    )
    assert sorted(inputs) == [o["transaction_id"] for o in outputs]
    assert {o["feature_status"] for o in outputs} == {"COMPLETE"}
    assert {o["model_version"] for o in outputs} == {"2"}
    assert {o["shadow_model_version"] for o in outputs} == {shadow}

    events = [dict(inputs[o["transaction_id"]]) for o in outputs]
    version_dir = models_dir / "fraud-gbt" / shadow
    expected, meta = _direct_scores(version_dir, events, redis_client, redis_prefix)
    actual = np.array([o["shadow_score"] for o in outputs])
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    assert [o["shadow_decision"] for o in outputs] == _decisions(expected, meta["thresholds"])
    agree = sum(o["decision"] == o["shadow_decision"] for o in outputs)
    assert agreement == {"agree": agree, "disagree": N - agree}, agreement
    if shadow == "3":  # the checks above would not catch a shadow that copied the champion
        assert np.abs(actual - np.array([o["score"] for o in outputs])).max() > 0.01
        assert 0 < agree < N, "the challenger's thresholds differ: some decisions must too"
