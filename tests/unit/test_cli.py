"""The command line as a user runs it: output, one-line errors, exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.cli import streamer_cli

REPO = Path(__file__).resolve().parents[2]


def test_version_names_the_libraries() -> None:
    result = streamer_cli("version")
    assert result.returncode == 0
    assert result.stdout.startswith("streamer ")
    assert "librdkafka" in result.stdout
    assert "onnxruntime" in result.stdout


def test_models_verify_accepts_the_shipped_model_and_refuses_a_tampered_copy(
    tmp_path: Path,
) -> None:
    ok = streamer_cli("models", "verify", "fraud-gbt@1")
    assert ok.returncode == 0, ok.stderr
    assert "fraud-gbt@1 ok" in ok.stdout

    shutil.copytree(REPO / "models" / "fraud-gbt", tmp_path / "fraud-gbt")
    onnx = tmp_path / "fraud-gbt" / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\x00")
    bad = streamer_cli("models", "verify", "fraud-gbt@1", "--models-dir", str(tmp_path))
    assert bad.returncode == 2
    assert bad.stderr.startswith("streamer: ")
    assert "sha256" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_features_load_needs_exactly_one_source() -> None:
    result = streamer_cli("features", "load")
    assert result.returncode == 2
    assert "exactly one of --file, --synthetic or --history" in result.stderr
