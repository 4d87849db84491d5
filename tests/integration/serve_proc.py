"""Run ``streamer serve`` as a real uvicorn process on a free port, for integration tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from streamer.dev.devstack.processes import free_port
from tests.integration.streamer_proc import streamer_env


@dataclass
class Served:
    """A running ``streamer serve``: its base URL, process and log."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)  # type: ignore[arg-type]


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamer serve exited {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"streamer serve not up after {timeout}s: {log.read_text()}")


@contextmanager
def serving(tmp_path: Path, *args: str, **settings: str) -> Iterator[Served]:
    """``streamer serve ARGS`` with ``STREAMER_*`` ``settings``; stopped with SIGTERM after."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    settings.setdefault("log_format", "console")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamer",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *list(args),
        ],
        env=streamer_env(**settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log)
        yield Served(url, proc, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
