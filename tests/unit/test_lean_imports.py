"""``streamer version`` and the command line itself import only what they run: no Redis
client, no settings machinery, no model runtime, no optional path's library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.lean_imports import HEAVY, command, imported

NOT_FOR_VERSION = (
    *HEAVY,
    "redis",
    "pydantic_settings",
    "onnxruntime",
    "numpy",
    "rich",
    "structlog",
    "prometheus_client",
    "opentelemetry",
)


def test_version_imports_none_of_what_other_commands_run(tmp_path: Path) -> None:
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, *command(report, "version")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("streamer "), done.stdout
    assert imported(report, NOT_FOR_VERSION) == []
