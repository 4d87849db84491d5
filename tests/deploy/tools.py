"""Shared helpers of the deploy checks: where the files are, helm and actionlint (built
from the Go module proxy by ``.ci/helm.sh`` and ``.ci/actionlint.sh``, once per machine,
cached in ~/.cache/streamer/bin), rendering the chart, and vendored JSON schemas.

If a tool cannot be built or the ``deploy`` extra is missing these checks fail: a deploy
check that silently skips checks nothing.
"""

from __future__ import annotations

import json
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamer.config.settings import Settings

try:
    import jsonschema
except ImportError as exc:  # a collection error that says what to do, not a skip
    pytest.fail(
        f"tests/deploy needs the deploy extra: pip install -e '.[deploy]' ({exc})",
        pytrace=False,
    )

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "streamer"
COMPOSE = REPO / "docker-compose.yml"
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
CRDS = REPO / "tests" / "fixtures" / "crds"
KEDA_ON = (
    "keda.enabled=true",
    "serviceMonitor.enabled=true",
    "prometheusRule.enabled=true",
    "grafanaDashboard.enabled=true",
    "kafka.sasl.enabled=true",
    "kafka.sasl.existingSecret=kafka-sasl",
    "redis.existingSecret=redis-auth",
)


# ---------------------------------------------------------------------------------- tools


def built_tool(script: str) -> str:
    proc = subprocess.run(
        ["bash", str(REPO / ".ci" / script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    path = proc.stdout.strip()
    if proc.returncode != 0 or not Path(path).is_file():
        pytest.fail(f".ci/{script} could not provide the tool:\n{proc.stderr[-3000:]}")
    return path


def helm_run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], check=False, capture_output=True, text=True, timeout=120)


def render(helm: str, *sets: str, chart: Path = CHART) -> list[dict[str, Any]]:
    args = ["template", "fraud", str(chart), "--namespace", "payments"]
    for item in sets:
        args += ["--set", item]
    proc = helm_run(helm, *args)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_error(helm: str, *sets: str) -> str:
    args = ["template", "fraud", str(CHART)]
    for item in sets:
        args += ["--set", item]
    proc = helm_run(helm, *args)
    assert proc.returncode != 0, f"rendered although it should not: {sets}"
    return proc.stderr


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def config_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The settings ConfigMap's data (not the dashboard's)."""
    (config,) = [
        d for d in docs if d["kind"] == "ConfigMap" and "STREAMER_INPUT_TOPIC" in d["data"]
    ]
    data: dict[str, str] = config["data"]
    return data


def the_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def is_setting(name: str) -> bool:
    if name.startswith("STREAMER_KAFKA_PROP_") or name == "STREAMER_SCHEMAS_DIR":
        return True
    return name.startswith("STREAMER_") and name[9:].lower() in Settings.model_fields


def vendored_schema(name: str) -> dict[str, Any]:
    """A JSON schema vendored by check-jsonschema (from SchemaStore / the compose-spec repo)."""
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath(name).read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def schema_errors(doc: Any, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
