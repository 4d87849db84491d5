"""The Helm chart rendered offline: Kubernetes and CRD schemas, scaling, probes, refusals."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.crds import CRD_KINDS, KUBE_VERSIONS, crd_errors, validate_all
from tests.deploy.tools import (
    CHART,
    KEDA_ON,
    config_data,
    helm_run,
    only,
    render,
    render_error,
    the_container,
)

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


def test_helm_lint_strict(helm: str) -> None:
    for sets in ((), KEDA_ON, ("autoscaling.enabled=true",)):
        args = ["lint", "--strict", str(CHART)]
        for item in sets:
            args += ["--set", item]
        proc = helm_run(helm, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "0 chart(s) failed" in proc.stdout


def test_default_render_is_valid_for_kubernetes(default_docs: list[dict[str, Any]]) -> None:
    how = validate_all(default_docs)
    assert how == {
        "ServiceAccount": "kubernetes schema",
        "ConfigMap": "kubernetes schema",
        "Service": "kubernetes schema",
        "Deployment": "kubernetes schema",
        "PodDisruptionBudget": "kubernetes schema",
    }
    assert only(default_docs, "Deployment")["spec"]["replicas"] == 2


def test_keda_render_is_valid_including_custom_resources(keda_docs: list[dict[str, Any]]) -> None:
    how = validate_all(keda_docs)
    assert {k for k, v in how.items() if v == "CRD schema"} == CRD_KINDS
    assert "HorizontalPodAutoscaler" not in how


def test_hpa_render_is_valid(hpa_docs: list[dict[str, Any]]) -> None:
    validate_all(hpa_docs)
    hpa = only(hpa_docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 6  # kafka.partitions
    assert hpa["spec"]["scaleTargetRef"]["name"] == only(hpa_docs, "Deployment")["metadata"]["name"]
    assert "replicas" not in only(hpa_docs, "Deployment")["spec"]
    assert not [d for d in hpa_docs if d["kind"] == "ScaledObject"]


def test_validators_reject_broken_objects(keda_docs: list[dict[str, Any]]) -> None:
    """The checks above can fail: broken copies of the rendered objects are refused."""
    scaled = copy.deepcopy(only(keda_docs, "ScaledObject"))
    scaled["spec"]["maxReplicaCount"] = "six"
    assert any("maxReplicaCount" in e for e in crd_errors(scaled))
    scaled = copy.deepcopy(only(keda_docs, "ScaledObject"))
    scaled["spec"]["trigers"] = scaled["spec"].pop("triggers")
    assert crd_errors(scaled)
    monitor = copy.deepcopy(only(keda_docs, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert crd_errors(monitor)
    monitor["apiVersion"] = "monitoring.coreos.com/v2"
    assert crd_errors(monitor)
    deployment = copy.deepcopy(only(keda_docs, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def test_scaled_object_scales_the_deployment_on_lag(keda_docs: list[dict[str, Any]]) -> None:
    scaled = only(keda_docs, "ScaledObject")["spec"]
    deployment = only(keda_docs, "Deployment")
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
    auth = only(keda_docs, "TriggerAuthentication")
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
    docs = render(helm, "keda.enabled=true", *sets)
    assert only(docs, "ScaledObject")["spec"]["maxReplicaCount"] == expected


def test_keda_and_hpa_are_mutually_exclusive(helm: str) -> None:
    error = render_error(helm, "keda.enabled=true", "autoscaling.enabled=true")
    assert "keda.enabled and autoscaling.enabled are mutually exclusive" in error


def test_grace_period_must_exceed_drain_time(helm: str) -> None:
    error = render_error(helm, "drainTimeoutSeconds=60")
    assert "terminationGracePeriodSeconds (45) must be greater than drainTimeoutSeconds" in error
    docs = render(helm, "drainTimeoutSeconds=60", "terminationGracePeriodSeconds=90")
    assert config_data(docs)["STREAMER_DRAIN_TIMEOUT_S"] == "60"
    assert (
        only(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90
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
    assert message in render_error(helm, *sets)


def test_pods_are_locked_down(default_docs: list[dict[str, Any]]) -> None:
    pod = only(default_docs, "Deployment")["spec"]["template"]["spec"]
    container = the_container(default_docs)
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
    container = the_container(default_docs)
    config = config_data(default_docs)
    (port,) = container["ports"]
    assert port["name"] == "metrics"
    assert str(port["containerPort"]) == config["STREAMER_METRICS_PORT"] == "9464"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    service = only(default_docs, "Service")["spec"]
    assert service["ports"][0]["targetPort"] == "metrics"
    pod_labels = only(default_docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    pdb = only(default_docs, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    grace = only(default_docs, "Deployment")["spec"]["template"]["spec"]
    assert grace["terminationGracePeriodSeconds"] > float(config["STREAMER_DRAIN_TIMEOUT_S"])


def test_service_monitor_selects_the_metrics_service(keda_docs: list[dict[str, Any]]) -> None:
    monitor = only(keda_docs, "ServiceMonitor")["spec"]
    service = only(keda_docs, "Service")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["namespaceSelector"] == {"matchNames": ["payments"]}


def test_config_checksum_rolls_pods_on_a_settings_change(helm: str) -> None:
    def checksum(*sets: str) -> str:
        docs = render(helm, *sets)
        annotations = only(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/config"]
        return value

    base = checksum()
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum() == base
    assert checksum("settings.max_batch_size=100") != base
    assert checksum("kafka.groupId=other") != base


def test_serve_render_is_valid_and_apart_from_the_stream(helm: str) -> None:
    docs = render(helm, "serve.enabled=true", "serve.apiKeys.existingSecret=api-keys")
    validate_all(docs)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    serve = next(d for name, d in deployments.items() if name.endswith("-serve"))
    stream = next(d for name, d in deployments.items() if not name.endswith("-serve"))
    serve_labels = serve["spec"]["template"]["metadata"]["labels"]
    stream_selector = stream["spec"]["selector"]["matchLabels"]
    assert not stream_selector.items() <= serve_labels.items()  # the stream never selects them
    (container,) = serve["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "serve"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert any(a.startswith("--api-keys-file=") for a in container["args"])
    hpa = only(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == serve["metadata"]["name"]
    services = [d for d in docs if d["kind"] == "Service"]
    assert any(s["spec"]["selector"] == serve["spec"]["selector"]["matchLabels"] for s in services)
