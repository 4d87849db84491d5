"""The model CD workflow: actionlint, the workflow schema, and the promises it keeps:
train -> register -> gate -> challenger; champion only behind a manual approval
environment and a passed gate report; pull requests never write to the registry."""

from __future__ import annotations

from typing import Any

import yaml

from tests.deploy.test_workflow import _actionlint_run, _Yaml12Loader
from tests.deploy.tools import REPO, schema_errors, vendored_schema

MODELS_WORKFLOW = REPO / ".github" / "workflows" / "models.yml"


def _workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(MODELS_WORKFLOW.read_text(), Loader=_Yaml12Loader)
    return data


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_models_workflow_passes_actionlint_and_the_schema(actionlint: str) -> None:
    proc = _actionlint_run(actionlint, MODELS_WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert schema_errors(_workflow(), vendored_schema("github-workflows.json")) == []


def test_models_change_train_register_gate_challenger_then_approved_champion() -> None:
    workflow = _workflow()
    assert "models/**" in workflow["on"]["push"]["paths"]
    jobs = workflow["jobs"]
    assert jobs["register"]["needs"] == "train"
    assert jobs["gate"]["needs"] == "register"
    assert set(jobs["champion"]["needs"]) == {"register", "gate"}
    assert "models/train.py" in _runs(jobs["train"])
    assert "streamer models register" in _runs(jobs["register"])
    gate = _runs(jobs["gate"])
    assert "streamer models gate" in gate
    assert "--alias challenger --require-gate gate.json" in gate
    champion = jobs["champion"]
    assert champion["environment"] == "model-approval"
    assert "--alias champion --require-gate gate.json" in _runs(champion)
    others = [_runs(job) for name, job in jobs.items() if name != "champion"]
    assert not any("--alias champion" in run for run in others)


def test_pull_requests_train_but_never_write_to_the_registry() -> None:
    jobs = _workflow()["jobs"]
    assert jobs["register"]["if"] == "github.event_name != 'pull_request'"
    # gate and champion need register, so a skipped register skips them too
    assert "register" in jobs["gate"]["needs"]
    assert "register" in jobs["champion"]["needs"]
