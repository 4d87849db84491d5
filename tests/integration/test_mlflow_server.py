"""The test bed's MLflow server is a working model registry with served artifacts.

Spoken to over its REST API (httpx), so the check needs neither the ``mlflow`` extra nor
MLflow's client: a model file uploaded as a run artifact comes back byte for byte through
a registered version found by its alias, which is what ``models:/name@alias`` resolves.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import httpx
import pytest


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    response = client.request(method, f"/api/2.0/mlflow/{path}", **kwargs)
    assert response.status_code == 200, f"{method} {path}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def mlflow(mlflow_tracking_uri: str) -> Any:
    with httpx.Client(base_url=mlflow_tracking_uri, timeout=30) as client:
        yield client


def test_a_model_found_by_alias_downloads_byte_for_byte(mlflow: httpx.Client, unique: str) -> None:
    name = f"fraud-gbt-{unique}"
    model = os.urandom(200_000) + b"\x00\xff not utf-8 \xc3\x28"  # arbitrary bytes
    run = _call(mlflow, "POST", "runs/create", json={"experiment_id": "0"})["run"]["info"]
    artifact = f"0/{run['run_id']}/artifacts/model/model.onnx"
    upload = mlflow.put(f"/api/2.0/mlflow-artifacts/artifacts/{artifact}", content=model)
    assert upload.status_code == 200, upload.text

    _call(mlflow, "POST", "registered-models/create", json={"name": name})
    version = _call(
        mlflow,
        "POST",
        "model-versions/create",
        json={"name": name, "source": f"{run['artifact_uri']}/model", "run_id": run["run_id"]},
    )["model_version"]
    alias = {"name": name, "alias": "champion", "version": version["version"]}
    _call(mlflow, "POST", "registered-models/alias", json=alias)
    found = _call(
        mlflow, "GET", "registered-models/alias", params={"name": name, "alias": "champion"}
    )["model_version"]

    assert found["version"] == "1"
    source = found["source"].removeprefix("mlflow-artifacts:/")
    download = mlflow.get(f"/api/2.0/mlflow-artifacts/artifacts/{source}/model.onnx")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == hashlib.sha256(model).hexdigest()
