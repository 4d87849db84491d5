"""The chart's KServe option: a ServingRuntime and an InferenceService, checked offline
against KServe's own CRD schemas (vendored in tests/fixtures/crds), that run streamer serve
with the Open Inference Protocol on the port KServe routes to."""

from __future__ import annotations

import pytest

from tests.deploy.crds import validate_all
from tests.deploy.tools import only, render, render_error


@pytest.mark.parametrize(("protocol", "port"), [("v2", 8080), ("grpc-v2", 8081)])
def test_kserve_objects_are_valid_and_serve_the_protocol(
    helm: str, protocol: str, port: int
) -> None:
    docs = render(helm, "kserve.enabled=true", f"kserve.protocol={protocol}")
    how = validate_all(docs)
    assert how["ServingRuntime"] == "CRD schema"
    assert how["InferenceService"] == "CRD schema"
    runtime, service = only(docs, "ServingRuntime"), only(docs, "InferenceService")
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    assert container["args"][:2] == ["serve", "--port=8080"]
    assert {"name": "STREAMER_SERVE_GRPC_PORT", "value": "8081"} in container["env"]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert set(runtime["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == protocol
    formats = [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    assert model["modelFormat"]["name"] in formats


def test_kserve_is_off_by_default_and_refuses_an_unknown_protocol(helm: str) -> None:
    kinds = {d["kind"] for d in render(helm)}
    assert not kinds & {"ServingRuntime", "InferenceService"}
    assert "protocol" in render_error(helm, "kserve.enabled=true", "kserve.protocol=v3")


def test_the_charts_own_serve_deployment_exposes_grpc_when_its_port_is_set(helm: str) -> None:
    docs = render(helm, "serve.enabled=true", "settings.serve_grpc_port=8081")
    validate_all(docs)
    serve = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-serve")
    )
    (container,) = serve["spec"]["template"]["spec"]["containers"]
    assert {"name": "grpc", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    service = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-serve")
    )
    assert any(p["name"] == "grpc" and p["port"] == 8081 for p in service["spec"]["ports"])
