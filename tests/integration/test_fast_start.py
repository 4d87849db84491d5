"""Fast start, on the real broker and Redis with ``streamer run`` as a process: the stream
imports only what it runs, and the model checked beside the group join still scores
nothing unless it passed every check."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.streamer_proc import (
    REPO,
    committed_total,
    load_synthetic_features,
    read_all,
    refused_start,
    stop,
    streamer_env,
)
from tests.lean_imports import HEAVY, command, imported

EVENTS = 20


def _produce(settings: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "streamer", "produce", "--count", str(EVENTS), "--quiet"],
        env=streamer_env(**settings),
        capture_output=True,
        timeout=120,
        check=True,
    )


def _scores_everything(run_settings: dict[str, str], python_args: list[str]) -> None:
    """``python ARGS`` (a ``streamer run``) scores every event produced, then stops cleanly."""
    env = streamer_env(**run_settings)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)  # tracing off: no exporter to import
    proc = subprocess.Popen([sys.executable, *python_args], env=env)
    bootstrap = run_settings["kafka_bootstrap_servers"]
    try:
        scored = read_all(bootstrap, run_settings["output_topic"], EVENTS, timeout=90)
    finally:
        assert stop(proc) == 0
    assert len(scored) >= EVENTS


def test_run_scores_without_the_optional_paths_libraries(
    run_settings: dict[str, str], redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    load_synthetic_features(redis_url, redis_prefix)
    _produce(run_settings)
    report = tmp_path / "modules.json"
    _scores_everything(run_settings, command(report, "run"))
    assert imported(report, HEAVY) == []


def _another_models_explainer(tmp_path: Path) -> Path:
    """A registry whose only version carries version 2's explainer with version 3's model:
    every file matches its recorded sha256, only the explainer check can refuse it."""
    registry = tmp_path / "models"
    version = registry / "fraud-gbt" / "3"
    shutil.copytree(REPO / "models" / "fraud-gbt" / "3", version)
    other = (REPO / "models" / "fraud-gbt" / "2" / "explainer.txt").read_bytes()
    (version / "explainer.txt").write_bytes(other)
    meta = json.loads((version / "metadata.json").read_text())
    meta["explainer"]["sha256"] = hashlib.sha256(other).hexdigest()
    (version / "metadata.json").write_text(json.dumps(meta))
    return registry


def test_a_model_refused_by_the_check_beside_the_join_scores_nothing(
    run_settings: dict[str, str], tmp_path: Path
) -> None:
    _produce(run_settings)
    settings = {**run_settings, "models_dir": str(_another_models_explainer(tmp_path))}
    settings["model"] = "fraud-gbt@3"
    code, lines, stderr = refused_start(**settings)
    assert code == 2, stderr
    assert len(lines) == 1, stderr
    assert "explainer disagrees with model.onnx" in lines[0], stderr
    bootstrap = settings["kafka_bootstrap_servers"]
    assert read_all(bootstrap, settings["output_topic"], 0, timeout=5) == []
    assert committed_total(bootstrap, settings["group_id"], settings["input_topic"]) == 0


def test_the_group_join_and_the_producer_come_before_the_model_runtime_and_redis_imports(
    run_settings: dict[str, str], redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """The join's round trips, and the stream's producer's connection, run beside the slow
    imports, not after them."""
    load_synthetic_features(redis_url, redis_prefix)
    _produce(run_settings)
    at_join, at_producer = tmp_path / "at-join.json", tmp_path / "at-producer.json"
    code = (
        "import json, pathlib, sys\n"
        "from streamer.clients import Clients\n"
        "from streamer.kafka.membership import Membership\n"
        "def recorded(method, report):\n"
        "    def call(self, *args, **kwargs):\n"
        "        if not report.exists():  # the first call\n"
        "            report.write_text(json.dumps(sorted(sys.modules)))\n"
        "        return method(self, *args, **kwargs)\n"
        "    return call\n"
        f"Membership.join = recorded(Membership.join, pathlib.Path({str(at_join)!r}))\n"
        f"Clients.producer = recorded(Clients.producer, pathlib.Path({str(at_producer)!r}))\n"
        "sys.argv = ['streamer', 'run']\n"
        "from streamer.cli.app import main\n"
        "main()\n"
    )
    _scores_everything(run_settings, ["-c", code])
    slow = ("onnxruntime", "onnx", "redis", "numpy")
    assert imported(at_join, slow) == []
    assert imported(at_producer, slow) == []
