"""Custom resources validated offline against the CRDs vendored in tests/fixtures/crds, and
every other object against the Kubernetes schemas of kubernetes-validate."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.tools import CRDS

KUBE_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}
KSERVE_KINDS = {"ServingRuntime", "InferenceService"}  # kserve.enabled only
# libyaml when present: the InferenceService CRD is 2 MB (12 s in pure Python, 3 s in C)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# ------------------------------------------------------------------------ CRD validation


def _structural_to_jsonschema(node: Any) -> Any:
    """A CRD's openAPIV3Schema as JSON Schema, with kubectl's strict field validation:
    unknown fields are errors (additionalProperties false where the CRD does not preserve
    unknown fields), int-or-string, nullable and RE2 flag groups spelled out."""
    if isinstance(node, list):
        return [_structural_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: _structural_to_jsonschema(v)
        for k, v in node.items()
        if not k.startswith("x-kubernetes-") and k != "nullable"
    }
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if isinstance(node.get("pattern"), str) and node["pattern"].startswith("^(?i)"):
        # Go's RE2 takes a flag group anywhere; Python's re only at the very start.
        out["pattern"] = "(?i)^" + node["pattern"][5:]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def _crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=_LOADER)  # a safe loader
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            schema = _structural_to_jsonschema(version["schema"]["openAPIV3Schema"])
            jsonschema.Draft7Validator.check_schema(schema)
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def crd_errors(doc: dict[str, Any]) -> list[str]:
    validator = _crd_validators().get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if validator is None:
        return [f"no vendored CRD serves {doc.get('apiVersion')} {doc.get('kind')}"]
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]
    name = doc.get("metadata", {}).get("name", "")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or len(name) > 253:
        errors.append(f"metadata.name {name!r} is not a DNS subdomain")
    return errors


def validate_all(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Validate every object; returns kind -> how. Fails on anything invalid or unchecked."""
    how: dict[str, str] = {}
    for doc in docs:
        if doc["kind"] in CRD_KINDS | KSERVE_KINDS:
            errors = crd_errors(doc)
            assert not errors, f"{doc['kind']}: {errors}"
            how[doc["kind"]] = "CRD schema"
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']} invalid for Kubernetes {version}: {exc}")
        how[doc["kind"]] = "kubernetes schema"
    return how
