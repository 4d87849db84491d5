"""A version's explainer travels with it through a real MLflow server and is verified on
every download: registered beside model.onnx and metadata.json, and a stored explainer
replaced on the server (another model's, or altered) is refused, never served."""

from __future__ import annotations

from pathlib import Path

from tests.integration.mlflow_helpers import MODELS, cli, mlflow_env, overwrite_artifact, register


def test_the_explainer_is_registered_and_a_replaced_one_refused(
    mlflow_tracking_uri: str, unique: str, tmp_path: Path
) -> None:
    name = f"fraud-gbt-{unique}"
    env = mlflow_env(mlflow_tracking_uri, tmp_path / "cache")
    good = register(MODELS / "fraud-gbt" / "3", name, env)
    verified = cli("models", "verify", f"models:/{name}/{good}", env=env)
    assert verified.returncode == 0, verified.stderr
    cached = list((tmp_path / "cache").rglob("explainer.txt"))
    assert len(cached) == 1
    assert cached[0].read_bytes() == (MODELS / "fraud-gbt" / "3" / "explainer.txt").read_bytes()

    other = register(MODELS / "fraud-gbt" / "2", name, env)
    wrong = (MODELS / "fraud-gbt" / "3" / "explainer.txt").read_bytes()
    overwrite_artifact(mlflow_tracking_uri, name, other, "explainer.txt", wrong)
    refused = cli("models", "verify", f"models:/{name}/{other}", env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "explainer.txt" in refused.stderr
    assert "sha256" in refused.stderr
    assert "Traceback" not in refused.stderr
