"""Child-process helpers shared by the service launchers: free ports, spawn, stop."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
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


def _die_with_parent(signum: int) -> None:  # pragma: no cover - runs in the child
    os.setsid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signum)


def spawn(
    cmd: list[str],
    log_path: Path,
    *,
    die_with_parent: bool,
    forks_workers: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session with output to ``log_path``.

    With ``die_with_parent`` the kernel kills the child when the process that started it
    dies, even by SIGKILL, so an interrupted test run leaves no orphaned server behind.
    A server that ``forks_workers`` runs under ``guard``, which passes that on to the
    whole process group.
    """
    if die_with_parent and forks_workers:
        cmd = [sys.executable, "-m", "streamer.dev.devstack.guard", *cmd]
    log = log_path.open("ab")
    try:
        if die_with_parent:
            signum = signal.SIGTERM if forks_workers else signal.SIGKILL
            return subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=partial(_die_with_parent, signum),  # noqa: PLW1509 - PDEATHSIG
            )
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    finally:
        log.close()


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds, and reap it
    (its forked workers too, even when the child itself has already exited)."""
    stop_group(proc.pid, grace=grace, reap=proc.poll)
    proc.wait()


def terminate_pid(pid: int, grace: float = 10.0) -> None:
    """Stop a process group by its leader's pid (``dev-down`` stops what ``dev-up`` started),
    workers included: the leader may exit before the processes it forked."""
    stop_group(pid, grace=grace)


def stop_group(
    pgid: int,
    *,
    grace: float = 10.0,
    spare: int = 0,
    reap: Callable[[], object] = lambda: None,
) -> None:
    """SIGTERM every process in group ``pgid`` (but ``spare``), SIGKILL what is left after
    ``grace`` seconds, and return once none runs. ``reap`` collects the caller's children."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in group_members(pgid, spare):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + (grace if signum == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            reap()
            if not group_members(pgid, spare):
                return
            time.sleep(0.1)


def group_members(pgid: int, spare: int = 0) -> list[int]:
    """Live (not zombie) processes whose process group is ``pgid``, but ``spare``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == spare:
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
