"""What ``streamer models register`` and ``models list`` print, on a real MLflow server:
standard output is for scripts (the URI alone), tables are whole when piped, and MLflow's
versions and aliases are listed when ``MLFLOW_TRACKING_URI`` is set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.integration.mlflow_helpers import MODELS, cli, mlflow_env, set_alias


def test_register_prints_only_the_uri_and_list_shows_mlflow_whole_when_piped(
    mlflow_tracking_uri: str, unique: str, tmp_path: Path
) -> None:
    # a name longer than 80 columns on its own: a table cut to a pipe's width would lose it
    name = f"fraud-gbt-with-a-name-long-enough-to-be-cut-at-eighty-columns-{unique}"
    env = mlflow_env(mlflow_tracking_uri, tmp_path / "cache")
    uris = []
    for folder in ("1", "2"):
        done = cli(
            "models", "register", str(MODELS / "fraud-gbt" / folder), "--name", name, env=env
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [done.stdout.strip()], done.stdout
        uris.append(done.stdout.strip())
        assert "registered (sha256" in done.stderr
    assert uris == [f"models:/{name}/1", f"models:/{name}/2"]  # a name new to the server
    set_alias(mlflow_tracking_uri, name, "champion", "1")
    promoted = cli(
        "models", "promote", uris[1], "--alias", "challenger", "--reason", "test", env=env
    )
    assert promoted.returncode == 0, promoted.stderr

    listed = cli("models", "list", env=env)  # stdout is a pipe here
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if name in line}
    assert set(rows) == {f"models:/{name}/1", f"models:/{name}/2"}, listed.stdout
    assert "champion" in rows[f"models:/{name}/1"]
    assert "challenger" in rows[f"models:/{name}/2"]
    assert "0.918" in rows[f"models:/{name}/1"]  # the held-out ROC-AUC of its run
    assert "…" not in listed.stdout
    assert "models in " in listed.stdout  # the file registry is still listed first


def test_list_without_mlflow_shows_the_file_registry_whole_when_piped(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    long = "fraud-gbt-a-model-name-that-a-table-at-eighty-columns-would-surely-cut"
    shutil.copytree(MODELS / "fraud-gbt" / "2", registry / long / "1")
    meta = registry / long / "1" / "metadata.json"
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps({**doc, "name": long, "version": "1"}))
    env = mlflow_env("", tmp_path / "cache", models_dir=str(registry))
    env.pop("MLFLOW_TRACKING_URI")
    listed = cli("models", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "MLflow" not in listed.stdout
    (row,) = [line for line in listed.stdout.splitlines() if f"{long}@1" in line]
    assert "…" not in listed.stdout
    assert "0.918" in row
