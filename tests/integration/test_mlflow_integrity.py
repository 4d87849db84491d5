"""Integrity by content on two real MLflow servers that number versions alike.

Two servers hold different models under the same ``name/version`` (as a staging and a
production server do, or one server restarted by ``make dev-down && make dev-up``). The
local download cache is shared, as it is for one user. Every command must use the model
of the server it talks to, a cache entry tampered with on disk is refused and replaced, and
a gate report made on one server cannot promote on the other.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import fastavro
import pytest

from streamer.dev.devstack.mlflow import MlflowServer
from tests.integration.backfill_files import write_events
from tests.integration.mlflow_helpers import MODELS, SHUFFLED, cli, mlflow_env, register

GOOD = MODELS / "fraud-gbt" / "2"


def _sha(directory: Path) -> str:
    return hashlib.sha256((directory / "model.onnx").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def second_mlflow() -> Iterator[str]:
    """A second MLflow server: its own database, so its numbering starts at 1 too."""
    workdir = Path(tempfile.mkdtemp(prefix="streamer-mlflow-b-"))
    server = MlflowServer(workdir)
    try:
        server.start()
        yield server.tracking_uri
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def two_servers(
    mlflow_tracking_uri: str,
    second_mlflow: str,
    unique: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> tuple[str, dict[str, str], dict[str, str]]:
    """The same name registered on both servers: v1 is the real model on A, the
    shuffled-labels model on B. One cache for both, as on one developer's machine."""
    name = f"fraud-gbt-{unique}"
    cache = tmp_path / "cache"
    settings = {"redis_url": redis_url, "redis_key_prefix": redis_prefix}
    env_a = mlflow_env(mlflow_tracking_uri, cache, **settings)
    env_b = mlflow_env(second_mlflow, cache, **settings)
    assert register(GOOD, name, env_a) == register(SHUFFLED, name, env_b) == "1"
    return name, env_a, env_b


def _verify(spec: str, env: dict[str, str]) -> str:
    done = cli("models", "verify", spec, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_same_name_and_version_on_two_servers_loads_each_servers_own_model(
    two_servers: tuple[str, dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    name, env_a, env_b = two_servers
    spec = f"models:/{name}/1"
    # A first, so B's command finds A's copy of "name/1" in the cache if keyed by version.
    assert _sha(GOOD)[:12] in _verify(spec, env_a)
    assert _sha(SHUFFLED)[:12] in _verify(spec, env_b)
    assert _sha(GOOD)[:12] in _verify(spec, env_a)

    events = write_events(tmp_path / "events.avro", 300)
    scores = {}
    for label, env in (("a", env_a), ("b", env_b)):
        out = tmp_path / f"scored-{label}.avro"
        done = cli("score-file", str(events), str(out), "--model", spec, env=env)
        assert done.returncode == 0, done.stderr
        with out.open("rb") as handle:
            scores[label] = [r["score"] for r in fastavro.reader(handle)]
    assert len(scores["a"]) == len(scores["b"]) == 300
    assert scores["a"] != scores["b"]  # two different models scored


def test_a_cache_entry_tampered_with_on_disk_is_refused_and_fetched_again(
    two_servers: tuple[str, dict[str, str], dict[str, str]],
) -> None:
    name, env_a, _ = two_servers
    spec = f"models:/{name}/1"
    _verify(spec, env_a)
    entry = Path(env_a["XDG_CACHE_HOME"]) / "streamer" / "mlflow-models"
    [onnx] = list(entry.rglob(f"{name}/1/*/model.onnx"))
    assert onnx.parent.name == _sha(GOOD)  # keyed by the content it must hold
    onnx.write_bytes((SHUFFLED / "model.onnx").read_bytes())  # same size class, other model

    done = cli("models", "verify", spec, env=env_a)
    assert done.returncode == 0, done.stderr
    assert _sha(GOOD)[:12] in done.stdout
    refusal = [line for line in done.stderr.splitlines() if "dropped" in line]
    assert len(refusal) == 1
    assert _sha(SHUFFLED) in refusal[0]
    assert _sha(GOOD) in refusal[0]
    assert _sha(onnx.parent) == _sha(GOOD)  # replaced by a verified copy


def test_a_gate_report_made_on_one_server_cannot_promote_on_the_other(
    two_servers: tuple[str, dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    name, env_a, env_b = two_servers
    spec = f"models:/{name}/1"
    events = write_events(tmp_path / "events.avro", 2000)
    report = tmp_path / "gate.json"
    gate = cli(
        "models", "gate", spec, "--against", spec, "--file", str(events), "--report", str(report),
        env=env_a,
    )  # fmt: skip
    assert gate.returncode == 0, gate.stderr
    made = json.loads(report.read_text())
    assert made["candidate"]["sha256"] == made["champion"]["sha256"] == _sha(GOOD)

    promote = ("models", "promote", spec, "--alias", "challenger", "--require-gate", str(report))
    refused = cli(*promote, env=env_b)
    assert refused.returncode != 0
    line = refused.stderr.strip().splitlines()[-1]
    assert _sha(GOOD) in line, refused.stderr
    assert _sha(SHUFFLED) in line, refused.stderr
    accepted = cli(*promote, env=env_a)
    assert accepted.returncode == 0, accepted.stderr


def test_a_version_without_a_recorded_sha256_is_refused(
    mlflow_tracking_uri: str, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_tracking_uri)
    name = f"untagged-{unique}"
    client = MlflowClient()
    client.create_registered_model(name)
    run = client.create_run(client.create_experiment(f"exp-{unique}"))
    client.log_artifact(run.info.run_id, str(GOOD / "model.onnx"), "model")
    client.log_artifact(run.info.run_id, str(GOOD / "metadata.json"), "model")
    client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)

    done = cli(
        "models", "verify", f"models:/{name}/1", env=mlflow_env(mlflow_tracking_uri, tmp_path)
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "streamer.sha256" in last
    assert "streamer models register" in last
