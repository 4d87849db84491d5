"""A version that fails to load or verify is refused while the old one keeps scoring, and
says so (log, metric, readiness body); SIGHUP never ends a streamer with nothing to
follow. On the real broker and Redis with ``streamer run`` as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streamer.dev.devstack.processes import free_port
from tests.fixtures.dashboard import AFTER_A_REFUSAL
from tests.integration.steady_run import (
    RATE,
    exactly_once,
    log_append_topics,
    scrape,
    stream_with,
    swap_settings,
)
from tests.integration.streamer_proc import (
    committed_total,
    http_get,
    load_synthetic_features,
    start_streamer,
    stop,
    wait_caught_up,
    wait_until,
)
from tests.integration.swap_helpers import SteadyStream, private_registry, promote


@pytest.fixture
def topics(
    admin: AdminClient, make_topic: Callable[..., str], unique: str
) -> Iterator[dict[str, str]]:
    """The scored topic stamps LogAppendTime: gaps are measured by the broker."""
    yield from log_append_topics(admin, make_topic, unique)


def _corrupt(version_dir: Path) -> None:
    """Flip bytes in the middle of model.onnx: same size, different sha256."""
    path = version_dir / "model.onnx"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def test_a_corrupted_new_version_is_refused_and_the_old_one_keeps_scoring(
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    topics: dict[str, str],
    group_id: str,
    tmp_path: Path,
    run_settings: dict[str, str],
) -> None:
    load_synthetic_features(redis_url, redis_prefix)
    models_dir = private_registry(tmp_path)
    promote(models_dir, "1")
    port = free_port()
    seen: dict[str, object] = {}

    def promote_corrupt_and_check(proc: subprocess.Popen[bytes]) -> None:
        promote(models_dir, "2")  # verified at promotion...
        _corrupt(models_dir / "fraud-gbt" / "2")  # ...and damaged afterwards
        os.kill(proc.pid, signal.SIGHUP)
        wait_until(lambda: _refusals(port) > 0, 15, "the refusal", proc)
        time.sleep(3.0)  # why: later polls must not retry the same damaged files
        seen["status"], seen["readyz"] = http_get(f"http://127.0.0.1:{port}/readyz")
        seen["metrics"] = scrape(port)

    # No periodic poll: it would race the corruption below and load @2 while intact.
    settings = swap_settings(
        run_settings, models_dir, model_watch_interval_s="3600", metrics_port=str(port)
    )
    log = tmp_path / "streamer.log"
    run = stream_with(kafka_bootstrap, topics, group_id, settings, log, promote_corrupt_and_check)
    outputs = exactly_once(kafka_bootstrap, topics, run.sent)
    assert {o.version for o in outputs} == {"1"}, "the damaged version scored"
    assert seen["status"] == 200, "the old model keeps scoring: still ready"
    body = str(seen["readyz"])
    assert '"model_refused": "2: ' in body, body
    assert "sha256" in body, body
    assert '"model_version": "fraud-gbt@1"' in body, body
    metrics = seen["metrics"]
    assert isinstance(metrics, dict)
    assert metrics['streamer_model_swaps_refused_total{version="2"}'] == 1
    assert metrics["streamer_model_swaps_total{}"] == 0
    for name in AFTER_A_REFUSAL:  # what the dashboard's refusal panel queries is exported
        assert any(k.startswith(name + "{") for k in metrics), name
    logged = [line for line in log.read_text().splitlines() if "refused" in line]
    assert logged, "no log line says the version was refused"
    assert "sha256" in logged[0], logged[0]


def _refusals(port: int) -> float:
    samples = scrape(port)
    return sum(v for k, v in samples.items() if k.startswith("streamer_model_swaps_refused_total"))


@pytest.mark.parametrize(
    "model",
    [
        pytest.param({"model_watch_interval_s": "0"}, id="watching-off"),
        pytest.param({"model": "models/fraud-gbt/2"}, id="a-path-spec"),
    ],
)
def test_sighup_never_stops_a_streamer_that_follows_no_alias(
    model: dict[str, str],
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    topics: dict[str, str],
    group_id: str,
    tmp_path: Path,
    run_settings: dict[str, str],
) -> None:
    """An operator's "check the models now" must not kill a pod that has nothing to check
    (SIGHUP's default action is to terminate)."""
    load_synthetic_features(redis_url, redis_prefix)
    models_dir = private_registry(tmp_path)
    model = {k: v.replace("models/", f"{models_dir}/") for k, v in model.items()}
    settings = swap_settings(run_settings, models_dir, **model)
    log = tmp_path / "streamer.log"
    stream = SteadyStream(kafka_bootstrap, topics["input_topic"], RATE, seed=51)
    proc = start_streamer(log, **settings)
    try:
        wait_until(
            lambda: committed_total(kafka_bootstrap, group_id, topics["input_topic"]) > 500,
            120,
            "scoring",
            proc,
        )
        os.kill(proc.pid, signal.SIGHUP)
        time.sleep(2.0)  # why: the window in which a SIGHUP would end the process
        alive = proc.poll() is None
        sent = stream.stop()
        if alive:
            wait_caught_up(kafka_bootstrap, group_id, topics["input_topic"], 120, proc)
    finally:
        stream.stop()
        code = stop(proc)
    assert alive, f"SIGHUP ended the streamer (exit {proc.returncode})"
    assert code == 0, log.read_text()[-3000:]
    assert {o.version for o in exactly_once(kafka_bootstrap, topics, sent)} == {"2"}
