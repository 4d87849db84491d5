"""Models through MLflow, on a real MLflow server, broker and Redis: a streamer follows
``models:/name@champion`` across an alias move without losing or repeating an event,
and refuses a version whose artifact was tampered with on the server (the promotion gate:
test_model_gate.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from streamer.dev.devstack.processes import free_port
from streamer.dev.generator import send_synthetic
from tests.integration.mlflow_helpers import (
    MODELS,
    cli,
    mlflow_env,
    overwrite_artifact,
    register,
    set_alias,
    switches,
    versions_by_input,
)
from tests.integration.streamer_proc import (
    committed_total,
    http_get,
    load_synthetic_features,
    read_all,
    start_streamer,
    stop,
    wait_caught_up,
    wait_until,
)

N = 12_000


@pytest.fixture
def model_name(unique: str) -> str:
    return f"fraud-gbt-{unique}"


def _producing(bootstrap: str, topic: str, count: int, seed: int) -> threading.Thread:
    kwargs = {
        "topic": topic,
        "bootstrap_servers": bootstrap,
        "count": count,
        "rate": 500.0,
        "n_cards": 3000,
        "n_merchants": 300,
        "event_seed": seed,
    }
    thread = threading.Thread(target=send_synthetic, kwargs=kwargs)
    thread.start()
    return thread


def _client_env(monkeypatch: pytest.MonkeyPatch, uri: str, tmp_path: Path) -> dict[str, str]:
    """The MLflow client's variables for this process and every streamer it starts."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return mlflow_env(uri, tmp_path / "cache")


def _readiness(port: int) -> dict[str, str | None]:
    body: dict[str, str | None] = json.loads(http_get(f"http://127.0.0.1:{port}/readyz")[1])
    return body


def test_the_streamer_follows_the_mlflow_alias_mid_stream_with_nothing_lost(
    mlflow_tracking_uri: str,
    model_name: str,
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    topics: dict[str, str],
    group_id: str,
    run_settings: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _client_env(monkeypatch, mlflow_tracking_uri, tmp_path)
    first, second = (register(MODELS / "fraud-gbt" / v, model_name, env) for v in ("1", "2"))
    set_alias(mlflow_tracking_uri, model_name, "champion", first)
    load_synthetic_features(redis_url, redis_prefix)
    port, source = free_port(), topics["input_topic"]
    proc = start_streamer(tmp_path / "streamer.log", **_run(run_settings, model_name, port))
    try:
        _wait_serving(port, f"{model_name}@{first}", proc)
        before = _producing(kafka_bootstrap, source, N // 2, seed=31)
        wait_until(
            lambda: committed_total(kafka_bootstrap, group_id, source) > 2000,
            120,
            "scoring under version 1",
            proc,
        )
        promoted = cli(
            "models",
            "promote",
            f"models:/{model_name}/{second}",
            "--alias",
            "champion",
            "--reason",
            "mid-stream",
            env=env,
        )
        assert promoted.returncode == 0, promoted.stderr
        after = _producing(kafka_bootstrap, source, N // 2, seed=33)  # the stream goes on
        _wait_serving(port, f"{model_name}@{second}", proc)
        before.join()
        after.join()
        wait_caught_up(kafka_bootstrap, group_id, source, 120, proc)
    finally:
        assert stop(proc) == 0, (tmp_path / "streamer.log").read_text()[-3000:]
    seen, versions = versions_by_input(read_all(kafka_bootstrap, topics["output_topic"], N))
    assert sorted(seen.values()) == [1] * N  # every input scored exactly once
    for sequence in versions.values():  # per input partition: 1 … 1 then 2 … 2
        assert (sequence[0], sequence[-1], switches(sequence)) == (first, second, 1)


def _run(run_settings: dict[str, str], model_name: str, port: int) -> dict[str, str]:
    return {
        **run_settings,
        "model": f"models:/{model_name}@champion",
        "model_watch_interval_s": "1",
        "metrics_port": str(port),
    }


def _wait_serving(port: int, version: str, proc: Any) -> None:
    wait_until(
        lambda: _readiness(port).get("model_version") == version, 120, f"{version} to serve", proc
    )


def test_a_version_tampered_with_on_the_server_is_refused_and_the_old_one_keeps_scoring(
    mlflow_tracking_uri: str,
    model_name: str,
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    topics: dict[str, str],
    group_id: str,
    run_settings: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _client_env(monkeypatch, mlflow_tracking_uri, tmp_path)
    first, second = (register(MODELS / "fraud-gbt" / v, model_name, env) for v in ("1", "2"))
    set_alias(mlflow_tracking_uri, model_name, "champion", first)
    tampered = bytearray((MODELS / "fraud-gbt" / "2" / "model.onnx").read_bytes())
    tampered[-64] ^= 0xFF  # one flipped byte: still a file, no longer the registered one
    overwrite_artifact(mlflow_tracking_uri, model_name, second, "model.onnx", bytes(tampered))

    refused = cli(
        "models", "promote", f"models:/{model_name}/{second}", "--alias", "champion", env=env
    )
    assert refused.returncode == 2
    assert "sha256" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    load_synthetic_features(redis_url, redis_prefix)
    port = free_port()
    proc = start_streamer(tmp_path / "streamer.log", **_run(run_settings, model_name, port))
    try:
        _wait_serving(port, f"{model_name}@{first}", proc)
        set_alias(mlflow_tracking_uri, model_name, "champion", second)  # outside streamer
        wait_until(lambda: bool(_readiness(port).get("model_refused")), 60, "the refusal", proc)
        assert "sha256" in str(_readiness(port)["model_refused"])
        _producing(kafka_bootstrap, topics["input_topic"], 2000, seed=32).join()
        wait_caught_up(kafka_bootstrap, group_id, topics["input_topic"], 120, proc)
        assert _readiness(port)["model_version"] == f"{model_name}@{first}"
    finally:
        assert stop(proc) == 0
    seen, versions = versions_by_input(read_all(kafka_bootstrap, topics["output_topic"], 2000))
    assert (len(seen), {v for s in versions.values() for v in s}) == (2000, {first})
