"""MLflow specs, without a server: parsing, dispatch, the optional extra stays optional,
and a missing or dead server is one line that does not leak credentials."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamer.errors import DependencyError, ModelError
from streamer.model import mlflow_registry
from streamer.model.mlflow_registry import MlflowSpec, parse_spec
from streamer.model.registry import is_path_spec, load_model

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("models:/fraud-gbt@champion", MlflowSpec("fraud-gbt", alias="champion")),
        ("models:/fraud-gbt/12", MlflowSpec("fraud-gbt", version="12")),
        ("models:/a.b_c-1@chal-lenger_2", MlflowSpec("a.b_c-1", alias="chal-lenger_2")),
    ],
)
def test_specs_parse(spec: str, parsed: MlflowSpec) -> None:
    assert parse_spec(spec) == parsed
    assert str(parsed) == spec
    assert not is_path_spec(spec)  # a registry entry: followed, not a file


@pytest.mark.parametrize(
    "spec",
    [
        "models:/",
        "models:/x",
        "models:/x@",
        "models:/x@2alias",
        "models:/x/v2",
        "models:/../x/1",
        "models:/x/1/extra",
        "models:/x@a b",
        "models:/.hidden/1",
    ],
)
def test_malformed_specs_say_what_to_write(spec: str) -> None:
    with pytest.raises(ModelError, match=r"use models:/NAME@ALIAS or models:/NAME/VERSION"):
        parse_spec(spec)


def test_the_file_registry_never_imports_mlflow() -> None:
    code = (
        "import sys; from pathlib import Path; import streamer.service, streamer.cli.app\n"
        "from streamer.model.registry import load_model\n"
        f"load_model('fraud-gbt@champion', Path({str(REPO / 'models')!r}))\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'mlflow'], 'mlflow imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_spec_without_a_tracking_uri_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ModelError, match="need MLFLOW_TRACKING_URI"):
        load_model("models:/fraud-gbt@champion", REPO / "models")


def test_a_dead_server_is_a_dependency_error_without_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from streamer.dev.devstack.processes import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://ml:hunter2@127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(DependencyError) as caught:
        mlflow_registry.load("models:/fraud-gbt@champion")
    assert "hunter2" not in str(caught.value)
    assert "http://***@127.0.0.1" in str(caught.value)
