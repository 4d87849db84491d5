"""Mutation testing of the pure core: ``make mutation``.

Each module listed in ``modules.toml`` is mutated by mutmut 3 in a scratch copy of the
repository (the shared working tree is never touched, and a module's run sees only the
unit tests mapped to it). Survivors listed in ``equivalents.toml`` are excused; any other
survivor is printed with its diff. The score of a module is killed / (mutants -
equivalents); a module under ``--min`` percent fails the run.

Output: one line per module, then ``mutation score: K/N killed (P%), E equivalent``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MUTMUT = Path(sys.executable).with_name("mutmut")
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}
_RESULT = re.compile(r"^\s+(\S+): (.+)$")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".hypothesis", "mutants")


@dataclass(frozen=True)
class Module:
    path: str
    tests: tuple[str, ...]
    deselect: tuple[str, ...] = ()  # test ids too slow to run once per mutant


@dataclass(frozen=True)
class Equivalent:
    mutant: str
    line: str
    reason: str


@dataclass
class Outcome:
    module: Module
    statuses: dict[str, str] = field(default_factory=dict)
    diffs: dict[str, str] = field(default_factory=dict)
    equivalent: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def killed(self) -> int:
        return sum(1 for s in self.statuses.values() if s in DETECTED)

    @property
    def scored(self) -> int:
        """Mutants that count: all of them but the excused equivalents."""
        return len(self.statuses) - len(self.equivalent)

    @property
    def survivors(self) -> list[str]:
        return [
            name
            for name, status in sorted(self.statuses.items())
            if status not in DETECTED and name not in self.equivalent
        ]

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.scored if self.scored else 100.0


def load_modules(names: Sequence[str]) -> list[Module]:
    data = tomllib.loads((HERE / "modules.toml").read_text())
    modules = [
        Module(m["path"], tuple(m["tests"]), tuple(m.get("deselect", ()))) for m in data["module"]
    ]
    if names:
        modules = [m for m in modules if any(n in m.path for n in names)]
    return modules


def load_equivalents() -> dict[str, Equivalent]:
    data = tomllib.loads((HERE / "equivalents.toml").read_text())
    entries = [Equivalent(e["mutant"], e["line"], e["reason"]) for e in data.get("equivalent", [])]
    return {e.mutant: e for e in entries}


def workspace(module: Module, root: Path, rev: str | None) -> list[str]:
    """A scratch copy of what the module's tests need, configured for mutmut; returns the
    test files that exist (a mapped file not written yet is reported, not fatal). With
    ``rev``, the package comes from that git revision and the tests from the working tree
    (to measure new tests while the tree's package is mid-edit)."""
    shutil.copytree(REPO / "tests", root / "tests", ignore=_IGNORE, symlinks=True)
    if rev is None:
        for name in ("streamer", "models", "schemas"):
            shutil.copytree(REPO / name, root / name, ignore=_IGNORE, symlinks=True)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, root / name)
    else:
        paths = ["streamer", "models", "schemas", "pyproject.toml", "README.md"]
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev, *paths], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
        for built in (REPO / "streamer").rglob("*.so"):  # compiled extensions are not in git
            shutil.copy2(built, root / built.relative_to(REPO))
    tests = [t for t in module.tests if (REPO / t).exists()]
    for missing in sorted(set(module.tests) - set(tests)):
        print(f"  note: {missing} does not exist; not run", file=sys.stderr)
    lines = "\n    ".join
    (root / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = streamer\n"
        f"only_mutate = {module.path}\n"
        "also_copy =\n    models\n    schemas\n    README.md\n"
        f"pytest_add_cli_args_test_selection =\n    {lines(tests or ['tests/unit/conftest.py'])}\n"
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -q\n"
        + "".join(f"    --deselect={test}\n" for test in module.deselect)
        + "use_git_change_detection = false\n"
        "timeout_multiplier = 5.0\n"
    )
    return tests


def mutmut(root: Path, *args: str, log: Path | None = None) -> str:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [str(MUTMUT), *args], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    if log is not None:
        log.write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        where = f"see {log}" if log is not None else f"\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
        raise RuntimeError(f"mutmut {' '.join(args)} failed (exit {out.returncode}): {where}")
    return out.stdout


def run_module(
    module: Module, equivalents: dict[str, Equivalent], jobs: int, logs: Path, rev: str | None
) -> Outcome:
    outcome = Outcome(module)
    with tempfile.TemporaryDirectory(prefix="streamer-mutation-") as tmp:
        root = Path(tmp)
        workspace(module, root, rev)
        log = logs / (module.path.replace("/", ".") + ".log")
        mutmut(root, "run", "--max-children", str(jobs), log=log)
        for line in mutmut(root, "results", "--all", "true").splitlines():
            if match := _RESULT.match(line):
                outcome.statuses[match[1]] = match[2].strip()
        survivors = [n for n, status in outcome.statuses.items() if status not in DETECTED]
        diffs = {name: mutmut(root, "show", name) for name in survivors}
        prefix = module.path.removesuffix(".py").replace("/", ".") + "."
        for name, eq in equivalents.items():
            if not name.startswith(prefix):
                continue
            matches = [
                n
                for n in survivors
                if _function(n) == _function(name) and eq.line in _added(diffs[n])
            ]
            if not matches:
                outcome.stale.append(
                    f"{name}: no surviving mutant of its function adds {eq.line!r}"
                )
            outcome.equivalent.extend(m for m in matches if m not in outcome.equivalent)
        outcome.diffs = {n: diffs[n] for n in outcome.survivors}
    return outcome


def _added(diff: str) -> str:
    """The lines a mutant's diff adds."""
    lines = diff.splitlines()
    return "\n".join(x[1:] for x in lines if x.startswith("+") and not x.startswith("+++"))


def _function(mutant: str) -> str:
    """A mutant's name without its number: mutmut renumbers when the function changes, so
    an equivalent is matched by its function and the line it adds, not by number."""
    return mutant.rsplit("__mutmut_", 1)[0]


def details(o: Outcome) -> None:
    """A module's survivors with their diffs, and stale equivalents, as soon as it is done."""
    for name in o.survivors:
        print(f"\nsurvived: {name}\n{o.diffs.get(name, '').strip()}", flush=True)
    for stale in o.stale:
        print(f"\nstale equivalent: {stale}", flush=True)
    print(f"  {summary(o)}", file=sys.stderr, flush=True)


def summary(o: Outcome) -> str:
    return (
        f"{o.module.path}: {o.killed}/{o.scored} killed ({o.percent:.1f}%), "
        f"{len(o.equivalent)} equivalent, {len(o.survivors)} survived"
    )


def report(outcomes: Sequence[Outcome], minimum: float) -> bool:
    """The per-module lines and the final score line; whether every module made it."""
    print()
    for o in outcomes:
        verdict = "ok" if o.percent >= minimum else f"below {minimum:g}%"
        print(f"{summary(o)}  [{verdict}]")
    killed = sum(o.killed for o in outcomes)
    scored = sum(o.scored for o in outcomes)
    equivalent = sum(len(o.equivalent) for o in outcomes)
    percent = 100.0 * killed / scored if scored else 100.0
    print(f"mutation score: {killed}/{scored} killed ({percent:.1f}%), {equivalent} equivalent")
    return all(o.percent >= minimum and not o.stale for o in outcomes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="only modules whose path contains one of these")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutmut children")
    parser.add_argument("--min", type=float, default=95.0, help="least score per module, percent")
    parser.add_argument("--logs", type=Path, default=REPO / "build" / "mutation")
    parser.add_argument("--rev", help="take the package from this git revision, not the tree")
    args = parser.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    equivalents = load_equivalents()
    outcomes = []
    for module in load_modules(args.modules):
        print(f"mutating {module.path} ...", file=sys.stderr, flush=True)
        outcomes.append(run_module(module, equivalents, args.jobs, args.logs, args.rev))
        details(outcomes[-1])
    return 0 if report(outcomes, args.min) else 1


if __name__ == "__main__":
    sys.exit(main())
