"""The promotion gate on a real MLflow server and Redis (and a real broker for --topic): it
passes an equal retrain, fails a model trained on shuffled labels with the reasons in its
report, and `promote --require-gate` accepts only a passed report for exactly that
candidate and the champion as it still is."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro

from streamer.dev.generator import send_synthetic
from streamer.dev.synth import generate_events, make_population
from tests.integration.mlflow_helpers import MODELS, SHUFFLED, cli, mlflow_env, register, set_alias
from tests.integration.streamer_proc import load_synthetic_features, plain_schema


def _events_file(path: Path) -> Path:
    events = generate_events(
        make_population(7, 3000, 300), 10_000, seed=21, start_ms=1_764_000_000_000
    )
    with path.open("wb") as out:
        fastavro.writer(out, plain_schema("transaction_event"), events)
    return path


def _gate(name: str, version: str, events: Path, report: Path, env: dict[str, str]) -> int:
    done = cli(
        "models",
        "gate",
        f"models:/{name}/{version}",
        "--against",
        f"models:/{name}@champion",
        "--file",
        str(events),
        "--report",
        str(report),
        "--p99-batch-ms",  # its quality and the promotion guard are checked here, not its
        "10000",  # speed: a busy machine's p99 of 20 batches is its worst stall
        env=env,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode


def _promote(name: str, version: str, report: Path, env: dict[str, str]) -> tuple[int, str]:
    done = cli(
        "models",
        "promote",
        f"models:/{name}/{version}",
        "--alias",
        "champion",
        "--require-gate",
        str(report),
        env=env,
    )
    return done.returncode, done.stderr


def test_the_gate_passes_an_equal_retrain_fails_shuffled_labels_and_guards_promotion(
    mlflow_tracking_uri: str, unique: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    name = f"fraud-gbt-{unique}"
    env = mlflow_env(
        mlflow_tracking_uri, tmp_path / "cache", redis_url=redis_url, redis_key_prefix=redis_prefix
    )
    champion = register(MODELS / "fraud-gbt" / "2", name, env)
    retrain = register(MODELS / "fraud-gbt" / "1", name, env)  # train.py reproduces it
    worse = register(SHUFFLED, name, env)  # models/train.py --shuffle-labels
    set_alias(mlflow_tracking_uri, name, "champion", champion)
    load_synthetic_features(redis_url, redis_prefix)
    events = _events_file(tmp_path / "events.avro")
    passed, failed = tmp_path / "pass.json", tmp_path / "fail.json"

    assert _gate(name, retrain, events, passed, env) == 0
    assert _gate(name, worse, events, failed, env) == 1
    verdict = json.loads(failed.read_text())
    reasons = {c["name"] for c in verdict["checks"] if not c["passed"]}
    assert not verdict["passed"]
    assert {"roc_auc", "pr_auc", "decision_agreement"} <= reasons
    assert (verdict["candidate"]["version"], verdict["events"]) == (worse, 10_000)

    code, err = _promote(name, worse, failed, env)
    assert (code, "it failed" in err) == (2, True)
    code, err = _promote(name, worse, passed, env)  # a passed report, for another candidate
    assert (code, f"made for {name}@{retrain}" in err) == (2, True)
    code, err = _promote(name, retrain, passed, env)
    assert code == 0, err
    code, err = _promote(name, retrain, passed, env)  # the champion it was gated against moved
    assert (code, "is now" in err) == (2, True)


def test_the_gate_replays_a_topic_from_its_start_up_to_max_events(
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    topics: dict[str, str],
    tmp_path: Path,
) -> None:
    load_synthetic_features(redis_url, redis_prefix)
    send_synthetic(
        topic=topics["input_topic"],
        bootstrap_servers=kafka_bootstrap,
        count=3000,
        n_cards=3000,
        n_merchants=300,
        event_seed=5,
    )
    env = mlflow_env(
        "http://unused.invalid",
        tmp_path,
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        kafka_bootstrap_servers=kafka_bootstrap,
    )
    report = tmp_path / "gate.json"
    done = cli(
        "models",
        "gate",
        "fraud-gbt@1",
        "--against",
        "fraud-gbt@champion",
        "--topic",
        topics["input_topic"],
        "--max-events",
        "2500",
        "--report",
        str(report),
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = json.loads(report.read_text())
    assert verdict["events"] == 2500
    assert verdict["champion"]["version"] == "2"  # the file registry's champion alias
