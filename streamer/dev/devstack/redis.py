"""Debian's ``redis-server`` on a free loopback port, with no persistence."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamer.dev.devstack.processes import ServiceError, free_port, spawn, stop_process


@dataclass
class RedisServer:
    """A redis-server process; ``start`` blocks until it answers PING."""

    workdir: Path
    die_with_parent: bool = True
    port: int = 0
    pid: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server is not installed: apt-get install redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if not self.port else self.port
        cmd = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
        ]
        self._proc = spawn(cmd, self.log_path, die_with_parent=self.die_with_parent)
        self.pid = self._proc.pid
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServiceError(f"redis-server exited early; see {self.log_path}")
            try:
                if client.ping():
                    client.close()
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise ServiceError(f"redis-server not ready after {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, grace=5.0)
            self._proc = None
