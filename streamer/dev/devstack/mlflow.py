"""An MLflow tracking server (SQLite backend store, local artifacts) on a free loopback port.

The server (``mlflow``, not the ``mlflow-skinny`` client that streamer's ``mlflow`` extra
uses) pulls in Flask, SQLAlchemy, Alembic, pandas, scikit-learn and more. It is installed
once, at a pinned version, into its own virtualenv in the cache, so none of that ever
reaches streamer's environment or decides its dependency versions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streamer.dev.devstack.processes import (
    ServiceError,
    cache_root,
    free_port,
    spawn,
    stop_process,
)
from streamer.dev.devstack.schema_registry import http_status

MLFLOW_VERSION = os.environ.get("STREAMER_DEV_MLFLOW_VERSION", "3.17.2")


def venv_dir(version: str = MLFLOW_VERSION) -> Path:
    """The server's own virtualenv, one per pinned version."""
    return cache_root() / f"mlflow-venv-{version}"


def ensure_server(version: str = MLFLOW_VERSION) -> Path:
    """Return the ``mlflow`` executable of the server's virtualenv, building it on first use.

    The marker file is written last, so an interrupted install is rebuilt, not trusted.
    """
    target = venv_dir(version)
    binary = target / "bin" / "mlflow"
    if (target / ".complete").exists():
        return binary
    shutil.rmtree(target, ignore_errors=True)
    steps = [
        [_base_python(), "-m", "venv", str(target)],
        [str(target / "bin" / "python"), "-m", "pip", "install", "-q", f"mlflow=={version}"],
    ]
    for cmd in steps:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            raise ServiceError(
                f"installing the MLflow {version} server failed ({' '.join(cmd[-3:])}):\n"
                f"{(result.stderr or result.stdout)[-3000:]}"
            )
    (target / ".complete").write_text(version)
    return binary


def _base_python() -> str:
    """The interpreter streamer's own venv was made from, so the server's venv does not
    depend on (or inherit packages from) the venv that happened to build it."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return str(base) if base.exists() else sys.executable


def server_command(binary: Path, workdir: Path, port: int, workers: int = 1) -> list[str]:
    """``mlflow server`` on loopback with a SQLite store and artifacts served by the server
    (``--artifacts-destination``), so clients need no shared file system."""
    return [
        str(binary),
        "server",
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination",
        str(workdir / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def server_env(base: Mapping[str, str]) -> dict[str, str]:
    """The server's environment: no job execution (a job runner and seven huey consumers,
    ~300 MB, for GenAI evaluation jobs a model registry never uses); no usage telemetry
    (it phones home, and waiting for that unreachable endpoint held every stop for the
    whole grace period); and none of the caller's ``MLFLOW_*`` settings, which are meant
    for clients and would point the server's own client code elsewhere."""
    env = {k: v for k, v in base.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "true"
    return env


@dataclass
class MlflowServer:
    """An ``mlflow server`` process group; ``start`` blocks until ``/health`` answers."""

    workdir: Path
    die_with_parent: bool = True
    port: int = 0
    pid: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mlflow.log"

    def start(self, timeout: float = 120.0) -> None:
        binary = ensure_server()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        cmd = server_command(binary, self.workdir, self.port)
        self._proc = spawn(
            cmd,
            self.log_path,
            die_with_parent=self.die_with_parent,
            forks_workers=True,
            env=server_env(os.environ),
        )
        self.pid = self._proc.pid
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServiceError(f"MLflow server exited early; see {self.log_path}")
            if http_status(f"{self.tracking_uri}/health") == 200:
                return
            time.sleep(0.25)
        raise ServiceError(f"MLflow server not ready after {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        """Stop the server and its workers: they share its process group (own session)."""
        if self._proc is not None:
            stop_process(self._proc, grace=10.0)
            self._proc = None
