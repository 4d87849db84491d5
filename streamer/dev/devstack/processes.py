"""Child-process helpers shared by the service launchers: free ports, spawn, stop."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    """A local service could not be fetched, started or reached."""


def cache_root() -> Path:
    """Where downloaded service binaries live: outside the repository, shared by runs."""
    if explicit := os.environ.get("STREAMER_DEV_CACHE"):
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamer"


def java_binary() -> str:
    """``$JAVA_HOME/bin/java`` or the ``java`` on PATH (Kafka 4.x and Apicurio 2.6 need 17)."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java:
        raise ServiceError(
            "Java 17 is needed to run the local stack: apt-get install openjdk-17-jre"
        )
    return java


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    os.setsid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(cmd: list[str], log_path: Path, *, die_with_parent: bool) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session with output to ``log_path``.

    With ``die_with_parent`` the kernel kills the child when the process that started it
    dies, even by SIGKILL, so an interrupted test run leaves no orphaned server behind.
    """
    log = log_path.open("ab")
    try:
        if die_with_parent:
            return subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed for PDEATHSIG
            )
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds, and reap it."""
    if proc.poll() is None:
        terminate_pid(proc.pid, grace)
    proc.wait()


def terminate_pid(pid: int, grace: float = 10.0) -> None:
    """Stop a process group by its leader's pid (``dev-down`` stops what ``dev-up`` started)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
