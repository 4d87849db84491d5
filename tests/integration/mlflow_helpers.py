"""Helpers for the MLflow model tests: the CLI as a subprocess, an adversary's MLflow client,
and reading back which version scored what."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from tests.integration.streamer_proc import REPO, decode_single_object, plain_schema, streamer_env

MODELS = REPO / "models"
SHUFFLED = REPO / "tests" / "fixtures" / "models" / "fraud-gbt-shuffled" / "1"


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``streamer ARGS`` in a subprocess with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def mlflow_env(tracking_uri: str, cache: Path, **settings: str) -> dict[str, str]:
    env = streamer_env(**settings)
    env.update({"MLFLOW_TRACKING_URI": tracking_uri, "XDG_CACHE_HOME": str(cache)})
    return env


def register(directory: Path, name: str, env: dict[str, str]) -> str:
    """``streamer models register DIR --name NAME``: the new version number."""
    done = cli("models", "register", str(directory), "--name", name, env=env)
    assert done.returncode == 0, done.stderr
    uri = done.stdout.strip().splitlines()[-1]
    assert uri.startswith(f"models:/{name}/"), uri
    return uri.rsplit("/", 1)[1]


def set_alias(tracking_uri: str, name: str, alias: str, version: str) -> None:
    """Move an alias the way any MLflow user can (REST, no verification by streamer)."""
    body = {"name": name, "alias": alias, "version": version}
    response = httpx.post(
        f"{tracking_uri}/api/2.0/mlflow/registered-models/alias", json=body, timeout=30
    )
    assert response.status_code == 200, response.text


def overwrite_artifact(tracking_uri: str, name: str, version: str, file: str, data: bytes) -> None:
    """Replace one stored artifact of a version on the server (a tampering adversary)."""
    found = httpx.get(
        f"{tracking_uri}/api/2.0/mlflow/model-versions/get",
        params={"name": name, "version": version},
        timeout=30,
    ).json()["model_version"]
    path = found["source"].removeprefix("mlflow-artifacts:/").lstrip("/")
    url = f"{tracking_uri}/api/2.0/mlflow-artifacts/artifacts/{path}/{file}"
    response = httpx.put(url, content=data, timeout=30)
    assert response.status_code == 200, response.text
    assert httpx.get(url, timeout=30).content == data


def versions_by_input(messages: list[Any]) -> tuple[dict[str, int], dict[int, list[str]]]:
    """(transaction id -> times scored, input partition -> model versions in input order)."""
    schema = plain_schema("scored_event")
    seen: dict[str, int] = defaultdict(int)
    rows: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for message in messages:
        record = decode_single_object(message.value(), schema)
        seen[record["transaction_id"]] += 1
        rows[record["source_partition"]].append((record["source_offset"], record["model_version"]))
    return dict(seen), {p: [v for _, v in sorted(r)] for p, r in rows.items()}


def switches(sequence: list[str]) -> int:
    return sum(1 for a, b in itertools.pairwise(sequence) if a != b)
