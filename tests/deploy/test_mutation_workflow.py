"""The mutation-testing workflow: actionlint, the workflow schema, a schedule, and a push
filter that names every module of the mutation set (tests/mutation/modules.toml)."""

from __future__ import annotations

import fnmatch
import tomllib
from typing import Any

import yaml

from tests.deploy.test_workflow import _actionlint_run, _Yaml12Loader
from tests.deploy.tools import REPO, schema_errors, vendored_schema

MUTATION_WORKFLOW = REPO / ".github" / "workflows" / "mutation.yml"


def _workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(MUTATION_WORKFLOW.read_text(), Loader=_Yaml12Loader)
    return data


def test_mutation_workflow_passes_actionlint_and_the_schema(actionlint: str) -> None:
    proc = _actionlint_run(actionlint, MUTATION_WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert schema_errors(_workflow(), vendored_schema("github-workflows.json")) == []


def test_it_runs_on_a_schedule_and_on_changes_to_every_mutated_module() -> None:
    on = _workflow()["on"]
    assert on["schedule"]
    modules = tomllib.loads((REPO / "tests" / "mutation" / "modules.toml").read_text())["module"]
    for event in ("push", "pull_request"):
        paths = on[event]["paths"]
        for module in modules:
            assert any(fnmatch.fnmatch(module["path"], p) for p in paths), (event, module)
            for test in module["tests"]:
                assert any(fnmatch.fnmatch(test, p) for p in paths), (event, test)
    steps = _workflow()["jobs"]["mutation"]["steps"]
    assert any("tests/mutation/run.py" in s.get("run", "") for s in steps)
