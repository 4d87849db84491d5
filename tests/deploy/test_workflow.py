"""The CI workflow: actionlint, the GitHub workflow schema, the jobs it must have."""

from __future__ import annotations

import copy
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import (
    REPO,
    WORKFLOW,
    helm_run,
    schema_errors,
    vendored_schema,
)


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans (true/false only), as GitHub reads workflows: `on` stays a key."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf")
)


@cache
def _workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(WORKFLOW.read_text(), Loader=_Yaml12Loader)
    return data


def _actionlint_run(actionlint: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint, "-no-color", "-oneline", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )


def test_workflow_passes_actionlint(actionlint: str) -> None:
    proc = _actionlint_run(actionlint, WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_rejects_a_broken_workflow(actionlint: str, tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "ci.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    needs: [nope]\n"
        "    steps:\n      - run: echo ${{ github.nonexistent_context_value }}\n"
    )
    proc = _actionlint_run(actionlint, broken)
    assert proc.returncode != 0
    assert "nope" in proc.stdout


def test_workflow_matches_the_github_workflow_schema() -> None:
    schema = vendored_schema("github-workflows.json")
    assert schema_errors(_workflow(), schema) == []
    broken = copy.deepcopy(_workflow())
    broken["jobz"] = broken.pop("jobs")
    assert schema_errors(broken, schema)
    broken = copy.deepcopy(_workflow())
    broken["on"]["pushh"] = broken["on"].pop("push")
    assert schema_errors(broken, schema)


def _steps(job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = _workflow()["jobs"][job]["steps"]
    return steps


def _uses(job: str) -> list[str]:
    return [s["uses"].split("@")[0] for s in _steps(job) if "uses" in s]


def _runs(job: str) -> str:
    return "\n".join(s.get("run", "") for s in _steps(job))


def test_workflow_jobs() -> None:
    jobs = _workflow()["jobs"]
    assert {"lint", "unit", "integration", "image", "chart"} <= set(jobs)
    assert "ruff check" in _runs("lint")
    assert "ruff format --check" in _runs("lint")
    assert "mypy" in _runs("lint")
    assert "pytest tests/unit" in _runs("unit")
    assert "tests/deploy" in _runs("unit")
    assert ".ci/helm.sh" in _runs("unit")


def test_workflow_integration_uses_service_containers() -> None:
    job = _workflow()["jobs"]["integration"]
    assert job["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert job["services"]["redis"]["image"].startswith("redis:")
    assert job["env"]["KAFKA_BOOTSTRAP_SERVERS"] == "localhost:9092"
    assert job["env"]["REDIS_URL"].startswith("redis://localhost:6379")
    assert "9092:9092" in job["services"]["kafka"]["ports"]
    assert "pytest tests/integration" in _runs("integration")


def test_workflow_pushes_the_image_and_chart_on_a_tag() -> None:
    workflow = _workflow()
    assert "v*" in workflow["on"]["push"]["tags"]
    image = workflow["jobs"]["image"]
    assert image["permissions"]["packages"] == "write"
    assert "docker/build-push-action" in _uses("image")
    (build,) = [s for s in _steps("image") if s.get("uses", "").startswith("docker/build-push")]
    assert "refs/tags/v" in build["with"]["push"]
    (login,) = [s for s in _steps("image") if s.get("uses", "").startswith("docker/login")]
    assert login["with"]["registry"] == "ghcr.io"
    assert "helm package" in _runs("chart")
    assert "actions/upload-artifact" in _uses("chart")
    (push,) = [s for s in _steps("chart") if "helm push" in s.get("run", "")]
    assert "refs/tags/v" in push["if"]


def test_ci_tool_scripts_print_only_the_path(helm: str, actionlint: str) -> None:
    for tool, flag in ((helm, "version"), (actionlint, "-version")):
        proc = subprocess.run([tool, flag], check=False, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    assert "v3.22.0" in helm_run(helm, "version", "--short").stdout
