"""``source .dev/env`` puts the checkout's own ``streamer`` first on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from streamer.dev.devstack import __main__ as devstack_main


def _in_bash(env_file: Path, command: str) -> str:
    done = subprocess.run(
        ["bash", "-c", f'source "{env_file}" && {command}'],
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_the_env_file_finds_this_environments_streamer_first(tmp_path: Path) -> None:
    bin_dir = tmp_path / "a venv with a space" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "streamer"
    fake.write_text("#!/bin/sh\necho mine\n")
    fake.chmod(0o755)
    env_file = tmp_path / "env"
    env_file.write_text(
        devstack_main.env_lines(
            {"kafka": "127.0.0.1:1", "mlflow": "http://127.0.0.1:4"}, str(bin_dir)
        )
    )
    assert _in_bash(env_file, "command -v streamer") == str(fake)
    assert _in_bash(env_file, "streamer") == "mine"
    assert _in_bash(env_file, 'echo "$PATH"') == f"{bin_dir}:/usr/bin:/bin"
    assert _in_bash(env_file, 'echo "$MLFLOW_TRACKING_URI"') == "http://127.0.0.1:4"


def test_up_writes_the_folder_of_the_interpreter_that_ran_it() -> None:
    """Under ``make dev-up`` that interpreter is ``.venv/bin/python``: its console scripts."""
    scripts = Path(devstack_main.scripts_dir())
    assert scripts.is_absolute()
    assert (scripts / "streamer").exists()
