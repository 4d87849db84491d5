"""Debian's ``redis-server`` on a free loopback port, with no persistence.

Optionally secured like a production cache: ``password`` sets ``requirepass`` and ``tls``
serves TLS only (no plaintext port) and requires a client certificate signed by the CA.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.dev.devstack.processes import ServiceError, free_port, spawn, stop_process


@dataclass(frozen=True)
class RedisTls:
    """PEM files: the server's certificate and key, the CA that signs accepted clients, and
    a client certificate and key the launcher uses to see that the server is ready."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


@dataclass
class RedisServer:
    """A redis-server process; ``start`` blocks until it answers PING.

    ``start`` may be called again after ``stop``: with ``port`` set it reuses the port, so
    clients see the same Redis come back (outage tests).
    """

    workdir: Path
    die_with_parent: bool = True
    port: int = 0
    pid: int = 0
    password: str | None = None
    tls: RedisTls | None = None
    unix_socket: Path | None = None  # also listen on this socket (mode 700)
    extra_args: tuple[str, ...] = ()  # more redis-server arguments (cluster mode)
    config_file: Path | None = None  # a Sentinel's config file: runs it as a Sentinel
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server is not installed: apt-get install redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if not self.port else self.port
        head = [str(self.config_file), "--sentinel"] if self.config_file else []
        cmd = [binary, *head, *self._port_args(), "--bind", "127.0.0.1", "--save", ""]
        cmd += ["--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"]
        if self.password:
            cmd += ["--requirepass", self.password]
        if self.unix_socket:
            cmd += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        cmd += self.extra_args
        self._proc = spawn(cmd, self.log_path, die_with_parent=self.die_with_parent)
        self.pid = self._proc.pid
        self._wait_ready(timeout)

    def _port_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0", "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
            "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "yes",
        ]  # fmt: skip

    def client_kwargs(self) -> dict[str, Any]:
        """Connection arguments for redis-py that this server accepts (tests, readiness)."""
        kwargs: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "socket_timeout": 1}
        if self.password:
            kwargs["password"] = self.password
        if self.tls:
            kwargs |= {
                "ssl": True,
                "ssl_ca_certs": str(self.tls.ca),
                "ssl_certfile": str(self.tls.client_cert),
                "ssl_keyfile": str(self.tls.client_key),
            }
        return kwargs

    def _wait_ready(self, timeout: float) -> None:
        import redis

        client = redis.Redis(**self.client_kwargs())
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

    def kill(self) -> None:
        """kill -9 (a crash: no shutdown, no goodbye to replicas or clients)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
            self.pid = 0
