"""The chart's MLflow values: the tracking URI as plain configuration, the credentials only
from an existing Secret, and a URI with credentials in it refused at render time."""

from __future__ import annotations

from typing import Any

from tests.deploy.tools import render, render_error, the_container


def _env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e for e in the_container(docs).get("env", [])}


def test_mlflow_credentials_come_from_the_secret_never_from_values(helm: str) -> None:
    env = _env(
        render(helm, "mlflow.trackingUri=https://mlflow.example", "mlflow.existingSecret=ml")
    )
    assert env["MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.example"
    assert env["XDG_CACHE_HOME"]["value"].startswith("/tmp/")  # the writable volume
    for name, key in (
        ("MLFLOW_TRACKING_USERNAME", "username"),
        ("MLFLOW_TRACKING_PASSWORD", "password"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "ml", "key": key}
    assert "MLFLOW_TRACKING_TOKEN" not in env


def test_a_token_key_replaces_username_and_password(helm: str) -> None:
    env = _env(
        render(
            helm,
            "mlflow.trackingUri=https://m.example",
            "mlflow.existingSecret=ml",
            "mlflow.tokenKey=token",
        )
    )
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "ml",
        "key": "token",
    }
    assert "MLFLOW_TRACKING_PASSWORD" not in env


def test_no_mlflow_values_no_mlflow_variables(helm: str) -> None:
    assert not [name for name in _env(render(helm)) if name.startswith("MLFLOW_")]


def test_a_tracking_uri_with_credentials_fails_the_render(helm: str) -> None:
    error = render_error(helm, "mlflow.trackingUri=https://user:hunter2@mlflow.example")
    assert "mlflow.trackingUri must not hold credentials" in error
    assert "hunter2" not in error
