"""Code samples in the README and docs/ run as written, or say why they cannot.

Every fenced block names its language. A Python or shell block carries a marker on the
line above it: ``<!-- sample: run -->`` (executed here, verbatim, from the repository's
root, with no servers) or ``<!-- sample: not run: <why> -->`` (it needs a broker, a
cluster, a Docker engine…; the reason says which test covers it instead). An unmarked
sample, a marker with no block under it, or a "not run" without a reason fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PYTHON = {"python", "py", "pycon"}
SHELL = {"bash", "sh", "shell", "console", "zsh"}
_FENCE = re.compile(r"^(?P<indent> {0,4})(?P<ticks>`{3,}|~{3,})(?P<lang>[^`\s]*)[^`]*$")
_MARKER = re.compile(
    r"^\s*<!--\s*sample:\s*(?P<kind>run|not run)\s*(?::\s*(?P<why>.*?))?\s*-->\s*$"
)
# Variables that would point a sample at servers of the reader's shell.
_SERVER_ENV = ("STREAMER_", "KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "MLFLOW_")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its marker and its code."""

    page: str
    line: int
    lang: str
    marker: str  # "run", "not run" or "" (none)
    reason: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(text: str, page: str) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a Markdown page, and the markers with no block under them."""
    lines = text.splitlines()
    found: list[Block] = []
    dangling: list[str] = []
    marker: tuple[int, str, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        mark = _MARKER.match(line)
        if mark:
            if marker is not None:
                dangling.append(f"{page}:{marker[0] + 1}")
            marker = (i, mark.group("kind"), (mark.group("why") or "").strip())
        elif fence:
            end = _closing(lines, i, fence.group("indent"), fence.group("ticks"))
            indent = len(fence.group("indent"))
            code = "\n".join(x[indent:] for x in lines[i + 1 : end]) + "\n"
            kind, why = (marker[1], marker[2]) if marker else ("", "")
            found.append(Block(page, i + 1, fence.group("lang").lower(), kind, why, code))
            marker = None
            i = end
        elif line.strip() and marker is not None:
            dangling.append(f"{page}:{marker[0] + 1}")
            marker = None
        i += 1
    if marker is not None:
        dangling.append(f"{page}:{marker[0] + 1}")
    return found, dangling


def _closing(lines: list[str], start: int, indent: str, ticks: str) -> int:
    for j in range(start + 1, len(lines)):
        stripped = lines[j].strip()
        if stripped.startswith(ticks[0] * len(ticks)) and not stripped.strip(ticks[0]):
            return j
    raise AssertionError(f"a fence opened at line {start + 1} is never closed")


def _all_blocks() -> tuple[list[Block], list[str]]:
    every: list[Block] = []
    dangling: list[str] = []
    for path in PAGES:
        found, lost = blocks(path.read_text(), str(path.relative_to(REPO)))
        every += found
        dangling += lost
    return every, dangling


def _samples(kind: str) -> list[Block]:
    return [b for b in _all_blocks()[0] if b.lang in PYTHON | SHELL and b.marker == kind]


def test_the_parser_reads_fences_markers_and_indented_blocks() -> None:
    page = (
        "<!-- sample: run -->\n```python\nx = 1\n```\n\n"
        "- a list item:\n\n  <!-- sample: not run: needs a cluster -->\n"
        "  ```bash\n  kubectl get pods\n  ```\n"
        "```text\nno marker needed\n```\n```\nno language\n```\n"
        "<!-- sample: run -->\nprose, not a block\n"
        "```bash\nunmarked\n```\n<!-- sample: run -->\n"
    )
    found, dangling = blocks(page, "p.md")
    assert [(b.lang, b.marker, b.reason, b.code) for b in found] == [
        ("python", "run", "", "x = 1\n"),
        ("bash", "not run", "needs a cluster", "kubectl get pods\n"),
        ("text", "", "", "no marker needed\n"),
        ("", "", "", "no language\n"),
        ("bash", "", "", "unmarked\n"),
    ]
    assert dangling == ["p.md:18", "p.md:23"]


def test_every_block_names_its_language_and_every_sample_is_marked() -> None:
    every, dangling = _all_blocks()
    assert every, "no code blocks found: is the parser broken?"
    problems = [f"{b.where}: a fenced block without a language" for b in every if not b.lang]
    problems += [
        f"{b.where}: a {b.lang} sample marked neither <!-- sample: run --> nor"
        " <!-- sample: not run: why -->"
        for b in every
        if b.lang in PYTHON | SHELL and not b.marker
    ]
    problems += [
        f"{b.where}: 'not run' needs a reason"
        for b in every
        if b.marker == "not run" and not b.reason
    ]
    problems += [f"{where}: a sample marker with no code block under it" for where in dangling]
    assert not problems, "\n".join(problems)


def test_some_samples_run() -> None:
    assert {b.lang for b in _samples("run")} >= {"python", "bash"}


@pytest.mark.parametrize("block", _samples("run"), ids=lambda b: b.where)
def test_sample_runs_verbatim(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    if block.lang in PYTHON:
        exec(compile(block.code, block.where, "exec"), {"__name__": "__sample__"})
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SERVER_ENV)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, (
        f"{block.where} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
