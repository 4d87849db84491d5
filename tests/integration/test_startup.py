"""Start-up validation: one clear line naming the problem and the setting; documented exit codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from streamer.model.registry import resolve
from tests.integration.streamer_proc import REPO, streamer_env


def _run(timeout: float = 60, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer", "run"],
        env=streamer_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def good(kafka_bootstrap: str, redis_url: str, make_topic: Callable[..., str]) -> dict[str, str]:
    inp = make_topic("in")
    return {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "redis_url": redis_url,
        "input_topic": inp,
        "output_topic": make_topic("out"),
        "dlq_topic": make_topic("dlq", partitions=1),
        "metrics_port": "0",
    }


def _one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.startswith("streamer: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"max_batch_size": "-1"}, ("STREAMER_MAX_BATCH_SIZE",)),
        ({"input_format": "protobuf"}, ("STREAMER_INPUT_FORMAT",)),
        ({"redis_url": "http://nope"}, ("STREAMER_REDIS_URL",)),
        ({"model": "no-such-model"}, ("STREAMER_MODEL",)),
        (
            {"kafka_properties": '{"no.such.property": "1"}'},
            ("no.such.property", "STREAMER_KAFKA_PROPERTIES"),
        ),
        ({"processing_guarantee": "maybe-once"}, ("STREAMER_PROCESSING_GUARANTEE",)),
    ],
)
def test_bad_settings_exit_2(
    good: dict[str, str], overrides: dict[str, str], needles: tuple[str, ...]
) -> None:
    result = _run(**{**good, **overrides})
    assert result.returncode == 2, result.stderr
    _one_clear_line(result, *needles)


def test_missing_setting_exits_2(good: dict[str, str]) -> None:
    settings = dict(good)
    del settings["input_topic"]
    result = _run(**settings)
    assert result.returncode == 2
    _one_clear_line(result, "STREAMER_INPUT_TOPIC")


def test_tampered_model_exits_2(good: dict[str, str], tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(REPO / "models", models, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    onnx = resolve("fraud-gbt@champion", models)  # the version the default setting loads
    data = bytearray(onnx.read_bytes())
    data[-10] ^= 0xFF
    onnx.write_bytes(bytes(data))
    result = _run(**good, models_dir=str(models))
    assert result.returncode == 2
    _one_clear_line(result, "sha256", "STREAMER_MODEL")


def test_unreachable_broker_exits_3(good: dict[str, str]) -> None:
    result = _run(**{**good, "kafka_bootstrap_servers": "127.0.0.1:9"})
    assert result.returncode == 3, result.stderr
    _one_clear_line(result, "STREAMER_KAFKA_BOOTSTRAP_SERVERS")


def test_missing_topic_exits_3(good: dict[str, str]) -> None:
    result = _run(**{**good, "output_topic": "no-such-topic-anywhere"})
    assert result.returncode == 3, result.stderr
    _one_clear_line(result, "no-such-topic-anywhere", "STREAMER_OUTPUT_TOPIC")


def test_debug_shows_the_traceback(good: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamer", "--debug", "run"],
        env=streamer_env(**{**good, "max_batch_size": "0"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_unreachable_schema_registry_exits_3(good: dict[str, str]) -> None:
    result = _run(
        **good, input_format="confluent", schema_registry_url="http://user:pw@127.0.0.1:9"
    )
    assert result.returncode == 3, result.stderr
    _one_clear_line(result, "schema registry", "STREAMER_SCHEMA_REGISTRY_URL")
    assert "pw" not in result.stderr


def test_redis_down_at_start_scores_degraded_instead_of_failing(
    kafka_bootstrap: str, run_settings: dict[str, str], tmp_path: Path
) -> None:
    from streamer.dev.generator import send_synthetic
    from tests.integration.streamer_proc import (
        decode_single_object,
        plain_schema,
        read_all,
        start_streamer,
        stop,
        wait_caught_up,
    )

    send_synthetic(topic=run_settings["input_topic"], bootstrap_servers=kafka_bootstrap, count=20)
    proc = start_streamer(
        tmp_path / "s.log", **{**run_settings, "redis_url": "redis://127.0.0.1:9/0"}
    )
    try:
        wait_caught_up(
            kafka_bootstrap, run_settings["group_id"], run_settings["input_topic"], 60, proc
        )
    finally:
        assert stop(proc) == 0, (tmp_path / "s.log").read_text()[-2000:]
    out = [
        decode_single_object(m.value(), plain_schema("scored_event"))
        for m in read_all(kafka_bootstrap, run_settings["output_topic"], 20)
    ]
    assert len(out) == 20
    assert {o["feature_status"] for o in out} == {"DEGRADED"}
