"""The Dockerfile and .dockerignore: slim, non-root, runtime dependencies only."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import dockerfile
import pytest

from tests.deploy.tools import (
    REPO,
)


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
    assert re.search(r'pip install (\.|"\.\[serve,mlflow\]")(\s|$)', runs), runs
    extras = re.findall(r"\.\[(.*?)\]", runs)
    assert extras in ([], ["serve,mlflow"]), "only the runtime extras (serve, mlflow) in the image"


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
        "from streamer.codec import schemas; print(schemas.SCHEMAS_DIR); "
        "schemas.transaction_schema(); schemas.scored_schema()"
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
