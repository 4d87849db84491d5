"""Model upgrades are a non-event for the stream, proven on the real broker and Redis with
``streamer run`` as a process: an alias moved with ``streamer models promote`` under a
steady 500 events/s is followed within seconds (at once on SIGHUP), the version switches at
one batch boundary, every input is scored exactly once, and the stream does not pause; a
corrupted version is refused while the old one keeps scoring, and says so."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from streamer.dev.devstack.processes import free_port
from tests.fixtures.dashboard import AFTER_A_REFUSAL
from tests.integration.streamer_proc import (
    committed_total,
    http_get,
    load_synthetic_features,
    start_streamer,
    stop,
    wait_caught_up,
    wait_until,
)
from tests.integration.swap_helpers import (
    Output,
    SteadyStream,
    assert_one_switch,
    input_ids,
    longest_stall_ms,
    now_ms,
    private_registry,
    promote,
    read_outputs,
)

RATE = 500.0  # events/s of steady traffic
BASELINE_S, TAIL_S = 3.0, 4.0  # steady traffic before and after the action
NOTICE_MS = 10_000  # an alias change is followed within 10 s
SIGHUP_MS = 1_000  # "at once"
GAP_MS = 100  # no pause of the stream longer than this


@pytest.fixture
def topics(
    admin: AdminClient, make_topic: Callable[..., str], unique: str
) -> Iterator[dict[str, str]]:
    """As the shared fixture, but the scored topic stamps LogAppendTime (as the demo's), so
    output gaps are measured by the broker, not by the process under test."""
    scored = f"t-{unique}-scored"
    config = {"message.timestamp.type": "LogAppendTime"}
    admin.create_topics([NewTopic(scored, 3, 1, config=config)])[scored].result(timeout=30)
    yield {
        "input_topic": make_topic("in", partitions=3),
        "output_topic": scored,
        "dlq_topic": make_topic("in.dlq", partitions=1),
    }
    admin.delete_topics([scored])[scored].exception(timeout=30)


def _scrape(port: int) -> dict[str, float]:
    """``/metrics`` as {'name{k="v",...}': value}."""
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def _settings(run_settings: dict[str, str], models_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **run_settings,
        "models_dir": str(models_dir),
        "model": "fraud-gbt@champion",
        "model_watch_interval_s": "1",
        **extra,
    }


@dataclass(frozen=True)
class Run:
    """A steady run: how many events were sent, and when the streamer had caught up with
    the stream and when the stream stopped (the window where stalls are measured)."""

    sent: int
    steady_ms: int
    stopped_ms: int


def _stream_with(
    bootstrap: str,
    topics: dict[str, str],
    group: str,
    settings: dict[str, str],
    log: Path,
    action: Callable[[subprocess.Popen[bytes]], None],
) -> Run:
    """Run a streamer on a steady stream; ``action`` runs after BASELINE_S of steady
    scoring, and the stream goes on for TAIL_S after it."""
    stream = SteadyStream(bootstrap, topics["input_topic"], RATE, seed=31)
    proc = start_streamer(log, **settings)
    try:
        wait_until(
            lambda: committed_total(bootstrap, group, topics["input_topic"]) > 1500,
            120,
            "steady scoring",
            proc,
        )
        steady = now_ms()
        time.sleep(BASELINE_S)
        action(proc)
        time.sleep(TAIL_S)
        sent, stopped = stream.stop(), now_ms()
        wait_caught_up(bootstrap, group, topics["input_topic"], 120, proc)
    finally:
        code = stop(proc)
        stream.stop()
    assert code == 0, log.read_text()[-3000:]
    return Run(sent, steady, stopped)


def _exactly_once(bootstrap: str, topics: dict[str, str], sent: int) -> list[Output]:
    ids = input_ids(bootstrap, topics["input_topic"], sent)
    outputs = read_outputs(bootstrap, topics["output_topic"], sent)
    assert len(ids) == len(set(ids)) == sent
    scored = Counter(o.record["transaction_id"] for o in outputs)
    assert set(scored) == set(ids), f"{len(set(ids) - set(scored))} inputs have no output"
    assert max(scored.values()) == 1, f"scored twice: {[t for t, n in scored.items() if n > 1][:5]}"
    return outputs


def test_alias_flipped_mid_stream_switches_once_without_loss_or_pause(
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
    promoted: list[int] = []

    def flip(_: subprocess.Popen[bytes]) -> None:
        promoted.append(now_ms())
        promote(models_dir, "2")
        promoted.append(now_ms())

    settings = _settings(run_settings, models_dir)
    run = _stream_with(kafka_bootstrap, topics, group_id, settings, tmp_path / "streamer.log", flip)
    outputs = _exactly_once(kafka_bootstrap, topics, run.sent)
    assert_one_switch(outputs, "1", "2")
    moved = (models_dir / "fraud-gbt" / "aliases.json").stat().st_mtime_ns // 1_000_000
    noticed = min(o.appended_ms for o in outputs if o.version == "2") - moved
    print(f"alias flip: first output of @2 {noticed} ms after the alias moved")
    assert 0 < noticed < NOTICE_MS, f"first output of @2 {noticed} ms after the alias moved"
    _assert_no_pause(outputs, run, promoted[1], "2", "alias flip")


def test_sighup_follows_the_alias_at_once(
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    topics: dict[str, str],
    group_id: str,
    tmp_path: Path,
    run_settings: dict[str, str],
) -> None:
    load_synthetic_features(redis_url, redis_prefix)
    models_dir = private_registry(tmp_path)  # champion is @2
    port = free_port()
    hup: list[int] = []

    def flip_then_hup(proc: subprocess.Popen[bytes]) -> None:
        promote(models_dir, "1")
        time.sleep(2.0)  # the hourly poll below will not see it: only SIGHUP can
        swaps = _scrape(port)["streamer_model_swaps_total{}"]
        assert swaps == 0, "swapped before SIGHUP: the test would prove nothing"
        hup.append(now_ms())
        os.kill(proc.pid, signal.SIGHUP)

    settings = _settings(
        run_settings, models_dir, model_watch_interval_s="3600", metrics_port=str(port)
    )
    run = _stream_with(
        kafka_bootstrap, topics, group_id, settings, tmp_path / "streamer.log", flip_then_hup
    )
    outputs = _exactly_once(kafka_bootstrap, topics, run.sent)
    assert_one_switch(outputs, "2", "1")
    noticed = min(o.appended_ms for o in outputs if o.version == "1") - hup[0]
    assert 0 < noticed < SIGHUP_MS, f"first output of @1 {noticed} ms after SIGHUP"
    _assert_no_pause(outputs, run, hup[0], "1", "SIGHUP")


def _assert_no_pause(outputs: list[Output], run: Run, action_ms: int, new: str, label: str) -> None:
    """No stall over GAP_MS from ``action_ms`` (or 1 s before the first output of the new
    version, if earlier: the watcher's load) to 1 s after that output.

    On a machine that stalls the stream anyway (six test runs on two cores: loading a model
    costs ~150 ms of CPU, mostly outside the GIL, taken from the loop's share), the swap
    may add less than GAP_MS to the longest stall elsewhere in the same steady run."""
    first_new = min(o.appended_ms for o in outputs if o.version == new)
    start, end = min(action_ms, first_new - 1000), first_new + 1000
    stall, at = longest_stall_ms(outputs, start, end)
    noise = max(
        longest_stall_ms(outputs, run.steady_ms, start)[0],
        longest_stall_ms(outputs, end, run.stopped_ms)[0],
    )
    print(
        f"{label}: first output of @{new} {first_new - action_ms} ms after; longest stall "
        f"{stall} ms ({at - first_new:+} ms from the first @{new} output); "
        f"elsewhere in the run: {noise} ms"
    )
    assert stall < noise + GAP_MS, (
        f"the stream stalled {stall} ms around the swap ({at - first_new:+} ms from the "
        f"first @{new} output), at most {noise} ms elsewhere in the run"
    )


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
        time.sleep(3.0)  # later polls must not retry the same damaged files
        seen["status"], seen["readyz"] = http_get(f"http://127.0.0.1:{port}/readyz")
        seen["metrics"] = _scrape(port)

    # No periodic poll: it would race the corruption below and load @2 while intact.
    settings = _settings(
        run_settings, models_dir, model_watch_interval_s="3600", metrics_port=str(port)
    )
    log = tmp_path / "streamer.log"
    run = _stream_with(kafka_bootstrap, topics, group_id, settings, log, promote_corrupt_and_check)
    outputs = _exactly_once(kafka_bootstrap, topics, run.sent)
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
    samples = _scrape(port)
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
    settings = _settings(run_settings, models_dir, **model)
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
        time.sleep(2.0)
        alive = proc.poll() is None
        sent = stream.stop()
        if alive:
            wait_caught_up(kafka_bootstrap, group_id, topics["input_topic"], 120, proc)
    finally:
        stream.stop()
        code = stop(proc)
    assert alive, f"SIGHUP ended the streamer (exit {proc.returncode})"
    assert code == 0, log.read_text()[-3000:]
    assert {o.version for o in _exactly_once(kafka_bootstrap, topics, sent)} == {"2"}
