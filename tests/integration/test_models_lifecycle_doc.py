"""The model life cycle in docs/models.md runs as written, for a new user, on a fresh stack.

The stack is the developer one (``python -m streamer.dev.devstack up``, what ``make dev-up``
runs) in a folder of its own; the shell is clean (no ``STREAMER_*``, ``MLFLOW_*``, no
``.venv/bin`` on PATH: ``source .dev/env`` must supply them); the blocks the page marks as
run by this test are concatenated in order, verbatim, after ``source .dev/env``. A fresh
MLflow numbers versions from 1, so the version numbers the page prints are checked too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_docs_samples import Block, blocks

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "models.md"
SECTION = "## The model life cycle"
MARK = "run verbatim by tests/integration/test_models_lifecycle_doc.py"
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"


def lifecycle_blocks() -> list[Block]:
    """The section's shell blocks that this test runs, in page order."""
    text = PAGE.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    found, dangling = blocks(text[start : end if end > 0 else None], "docs/models.md")
    assert not dangling
    return [b for b in found if b.lang == "bash" and MARK in b.reason]


def _clean_env(**extra: str) -> dict[str, str]:
    """A new user's shell: no streamer, Kafka, Redis or MLflow settings, no venv on PATH."""
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR")}
    return {**keep, "PATH": CLEAN_PATH, **extra}


DRIVER = """\
ip link set lo up 2>/dev/null || true
python=$1 repo=$2
PYTHONPATH=$repo "$python" -m streamer.dev.devstack up > up.out 2> up.err || exit 90
setsid bash -euo pipefail lifecycle.sh > out.txt 2> err.txt &
shell=$!
wait $shell && echo 0 > code.txt || echo $? > code.txt
kill -TERM -- -$shell 2>/dev/null || true   # the stream, if a failed step left it running
PYTHONPATH=$repo "$python" -m streamer.dev.devstack down > down.out 2> down.err
"""


def _isolation() -> list[str]:
    """A network namespace of the test's own when the machine allows one (root, or user
    namespaces), so the page's fixed port 9464 cannot meet another process's; otherwise the
    machine's own network, where that port must be free."""
    for prefix in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return prefix
    assert _port_free(9464), "port 9464 (the page's /metrics port) is taken on this machine"
    return []


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _run_lifecycle(cwd: Path, script: str) -> tuple[int, str, str]:
    """``make dev-up`` (its command), the life cycle in ``bash -euo pipefail`` in a clean
    shell after ``source .dev/env``, then ``make dev-down``; (exit code, stdout, stderr)."""
    (cwd / "lifecycle.sh").write_text(script)
    (cwd / "driver.sh").write_text(DRIVER)
    driver = subprocess.run(
        [*_isolation(), "bash", "driver.sh", sys.executable, str(REPO)],
        cwd=cwd,
        env=_clean_env(XDG_CACHE_HOME=str(cwd / "cache"), STREAMER_DEV_CACHE=_dev_cache()),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert driver.returncode == 0, f"{driver.stderr}\n{_read(cwd / 'up.err')}"
    assert _read(cwd / "down.err") == "", _read(cwd / "down.err")
    return int(_read(cwd / "code.txt")), _read(cwd / "out.txt"), _read(cwd / "err.txt")


def _dev_cache() -> str:
    """Where the launcher keeps Kafka's jars and MLflow's venv (not fetched again here)."""
    from streamer.dev.devstack.processes import cache_root

    return str(cache_root())


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_the_page_marks_the_steps_this_test_runs() -> None:
    steps = lifecycle_blocks()
    assert len(steps) == 9
    code = "".join(b.code for b in steps)
    assert "export MLFLOW_TRACKING_URI" not in code  # .dev/env says where MLflow is
    assert "streamer capture" in code
    assert "STREAMER_MODEL=models:/" in code


def test_the_life_cycle_runs_verbatim_on_a_fresh_dev_stack(tmp_path: Path) -> None:
    (tmp_path / "models").symlink_to(REPO / "models")  # the checkout's registry, read only
    script = "source .dev/env\n" + "".join(b.code for b in lifecycle_blocks())
    code, out, err = _run_lifecycle(tmp_path, script)
    run_log = _read(tmp_path / "run.log")
    assert code == 0, f"exit {code}\n--- stdout\n{out}\n--- stderr\n{err}\n--- run.log\n{run_log}"

    # the version numbers the page prints are a fresh server's
    assert "models:/fraud-gbt/2 vs models:/fraud-gbt@champion (version 1)" in out
    report = json.loads((tmp_path / "gate.json").read_text())
    assert report["passed"] is True
    assert (report["candidate"]["version"], report["champion"]["version"]) == ("2", "1")
    assert set(report["rates"]) == {"candidate", "champion"}
    assert report["events"] == 20000
    # the stream served from MLflow, named its shadow, and followed the promotion
    assert "with model fraud-gbt@1 (spec models:/fraud-gbt@champion)" in run_log
    assert "shadow fraud-gbt@2 (spec models:/fraud-gbt@challenger)" in run_log
    assert '"model_version": "fraud-gbt@1"' in out  # ready, before the promotion
    assert "streamer_shadow_decisions" in out
    assert '"model_version": "fraud-gbt@2"' in out  # swapped after the promotion
    rows = [line.split("│") for line in out.splitlines() if line.startswith("│")]
    (listed,) = ["│".join(r) for r in rows if r[1].strip() == "models:/fraud-gbt/2"]
    assert "challenger, champion" in listed, out  # `models list` shows MLflow's aliases
    assert "champion: 2 -> 1" in err  # rolled back
    assert "Traceback" not in err + run_log
    assert "p99 <= inf" not in run_log
    assert (tmp_path / "replay.avro").stat().st_size > 0


@pytest.fixture(autouse=True)
def _no_stack_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test starts its own stack; addresses in the environment must not leak in."""
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
