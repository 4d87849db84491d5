"""The README's main job in five steps runs as written, on a real broker and Redis.

The block the README marks as run by this test is run verbatim in ``bash -euo pipefail``,
in a clean shell (no ``STREAMER_*``, no ``.venv/bin`` on PATH), from a folder whose
``.dev/env`` says where the test harness's Kafka and Redis are, as ``make dev-up`` writes
it. The block leaves ``streamer run`` running in the background, as a reader's shell
would; the test stops it with the shell's process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from streamer.dev.devstack.processes import free_port
from tests.unit.test_docs_samples import Block, blocks

REPO = Path(__file__).resolve().parents[2]
SECTION = "## The main job in five steps"
MARK = "run verbatim by tests/integration/test_readme_main_job.py"


def main_job() -> Block:
    """The README section's one shell block marked for this test."""
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    found, dangling = blocks(text[start:end], "README.md")
    assert not dangling
    (block,) = [b for b in found if b.lang == "bash" and MARK in b.reason]
    return block


def _stop_group(pgid: int, timeout: float = 30.0) -> None:
    """SIGTERM what the shell left running (``streamer run &``), SIGKILL if it lingers."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)


def test_the_main_job_runs_verbatim(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "models").symlink_to(REPO / "models")  # the checkout's registry, read only
    (tmp_path / ".dev").mkdir()
    # The harness's Redis and this machine's ports are shared with other tests.
    prefix = f"readme-{os.getpid()}:"
    (tmp_path / ".dev" / "env").write_text(
        f"export STREAMER_KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap}\n"
        f"export STREAMER_REDIS_URL={redis_url}\n"
        f"export STREAMER_REDIS_KEY_PREFIX={prefix}\n"
        f"export STREAMER_METRICS_PORT={free_port()}\n"
        f'export PATH={Path(sys.executable).parent}:"$PATH"\n'
    )
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    # Files, not pipes: the stream left in the background holds the shell's stdout open.
    with (tmp_path / "out.txt").open("w") as stdout, (tmp_path / "err.txt").open("w") as stderr:
        shell = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", main_job().code],
            cwd=tmp_path,
            env={**env, "PATH": "/usr/local/bin:/usr/bin:/bin"},
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            code: int | str = shell.wait(timeout=180)
        except subprocess.TimeoutExpired:
            code = "none: still running after 180 s"
        finally:
            _stop_group(shell.pid)
    out, err = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    log = (tmp_path / "streamer.log").read_text() if (tmp_path / "streamer.log").exists() else ""
    assert code == 0, f"exit {code}\n{out}\n{err}\n--- streamer.log\n{log}"
    scored = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(scored) == 5, out
    assert {s["decision"] for s in scored} <= {"APPROVE", "REVIEW", "DECLINE"}
    assert {s["feature_status"] for s in scored} <= {"COMPLETE", "PARTIAL"}, "features were loaded"
    assert "Traceback" not in err + log
