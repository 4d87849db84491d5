"""The README is one page that leads to docs/; user docs say what is, not how it came to be.

The site's own links, anchors and nav are checked by ``make docs`` (mkdocs --strict); the
README is not part of the site, so its links are checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from streamer.config.loader import KAFKA_PROP_PREFIX, NOT_SETTINGS, known_names

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
USER_DOCS = [README, *sorted(DOCS.glob("*.md"))]
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
# Development history has no place in user docs (the before-stop hook greps the same).
_HISTORY = re.compile(
    r"(previous|this|last|earlier) stop|stop's (code|server|work)"
    r"|(before|after) this change|original main|before/after",
    re.IGNORECASE,
)
_COMMIT = re.compile(
    r"(?<![0-9a-z/.-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![0-9a-z])"
)


def test_readme_is_one_page_with_the_quick_start() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    quick = text[text.index("## Quick start") :]
    assert re.search(r"^make demo\b", quick, re.M)
    assert re.search(r"^make test\b", quick, re.M)


def test_readme_links_resolve() -> None:
    broken = []
    for target in _LINK.findall(README.read_text()):
        if "://" in target or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (REPO / path).exists():
            broken.append(target)
    assert not broken, f"README.md links to missing files: {broken}"


def test_every_docs_page_is_in_the_sites_nav() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    in_nav = {next(iter(item.values())) for item in config["nav"]}
    pages = {p.name for p in DOCS.glob("*.md")}
    assert pages == in_nav, f"only in docs/: {pages - in_nav}; only in nav: {in_nav - pages}"
    assert config["theme"]["name"] == "material"


@pytest.mark.parametrize("page", USER_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_user_docs_say_what_is(page: Path) -> None:
    text = page.read_text()
    history = [m.group(0) for m in _HISTORY.finditer(text)]
    commits = [m.group(0) for m in _COMMIT.finditer(text)]
    assert not history, f"{page.name}: development history: {history}"
    assert not commits, f"{page.name}: commit hashes: {commits}"


def test_cited_results_files_exist() -> None:
    cited = {
        name
        for page in USER_DOCS
        for name in re.findall(r"bench/results/[\w./-]+\.json", page.read_text())
    }
    performance = (DOCS / "performance.md").read_text()
    assert re.search(r"bench/results/[\w./-]+\.json", performance)
    assert re.search(r"\b20\d\d-\d\d-\d\d", performance), "figures carry their date"
    missing = sorted(c for c in cited if not (REPO / c).is_file())
    assert not missing, f"cited but not in the repository: {missing}"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("the pipeline (`e1cab26`)", True),
        ("previous stop", True),
        ("sha256 checked", False),
        ("`a1b2c3d4e5`", True),
        ("bench/results/pipeline.json at 15:24Z", False),
        ("card-000001 and 2026-11-30", False),
    ],
)
def test_history_patterns(text: str, found: bool) -> None:
    assert bool(_HISTORY.search(text) or _COMMIT.search(text)) is found


# Variables the docs may name that are not settings: the misspelling the configuration page
# shows being refused, and the schema directory the image sets (read by codec/schemas.py).
NOT_SETTINGS_NAMED = {"STREAMER_MAX_BATCHSIZE", "STREAMER_SCHEMAS_DIR"}


def test_variables_the_docs_name_are_settings() -> None:
    known = set(known_names()) | NOT_SETTINGS_NAMED
    stale = {
        f"{page.name}: {name}"
        for page in USER_DOCS
        for name in re.findall(r"\bSTREAMER_[A-Z0-9_]*[A-Z0-9]\b", page.read_text())
        if name not in known
        and not name.startswith((KAFKA_PROP_PREFIX, *NOT_SETTINGS))
        and not any(name.startswith(f"{k}__") for k in known)
    }
    assert not stale, f"no such setting (renamed or removed?): {sorted(stale)}"


def _recipe(target: str) -> list[str]:
    """The command lines of one Makefile target."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_make_test_builds_the_docs_and_dev_up_sets_the_machine_up_first() -> None:
    test = "\n".join(_recipe("test"))
    # the checks beside the tests: each run through make, each one's exit code read back
    loops = re.findall(r"for check in ([\w ]+);", test)
    assert loops == ["lint docs", "lint docs"], test
    assert re.search(r"\$\(MAKE\)(\s+--?[\w-]+)*\s+\$\$check\b", test), test
    assert 'failed="$$failed $$check"' in test, test
    assert any("mkdocs build --strict" in c for c in _recipe("docs"))
    dev_up = _recipe("dev-up")
    assert ".ci/setup.sh" in dev_up[0], dev_up
    assert "devstack up" in dev_up[-1], dev_up
