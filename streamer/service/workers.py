"""``STREAMER_WORKERS=N``: one command runs N stream processes in one consumer group.

One Python process scores on about one core (the GIL), so a host with 16 cores would need
16 containers. Instead ``streamer run`` with ``workers > 1`` becomes a supervisor: it starts
N children, each an ordinary ``streamer run`` with ``STREAMER_WORKERS=1`` and its own

- metrics port: ``metrics_port + i`` (when the port is not 0),
- transactional id: ``<id>-<i>`` (exactly-once: the broker fences per id),
- static member id: ``<group_instance_id>-<i>`` (when set; a restarted child reclaims its
  partitions at once instead of after the session timeout).

Partitions are spread over the children by the group protocol, as over pods. The
supervisor holds no client and does no scoring: it forwards SIGTERM/SIGINT to every child,
restarts a child that crashed (non-zero exit, ``kill -9``) with exponential backoff, and
exits when every child has stopped. A child refusing its settings (exit 2) stops them all:
restarting cannot fix a setting. Pure orchestration; the children re-read the same
settings (environment, ``--config``) as the parent did.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from streamer.config.settings import Settings

log = logging.getLogger(__name__)

USAGE_EXIT = 2  # bad settings or model: every child would fail the same way
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
HEALTHY_AFTER_S = 60.0  # a child that ran this long restarts without backoff next time


def child_env(settings: Settings, index: int, environ: dict[str, str]) -> dict[str, str]:
    """The environment of child ``index``: the parent's, with its own identities."""
    env = {**environ, "STREAMER_WORKERS": "1"}
    if settings.metrics_port:
        env["STREAMER_METRICS_PORT"] = str(settings.metrics_port + index)
    if settings.exactly_once:
        env["STREAMER_TRANSACTIONAL_ID"] = f"{settings.effective_transactional_id()}-{index}"
    instance = settings.group_instance_id
    if instance:
        base = socket.gethostname() if instance == "auto" else instance
        env["STREAMER_GROUP_INSTANCE_ID"] = f"{base}-{index}"
    return env


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes]
    started: float
    failures: int = 0  # consecutive crashes, for the backoff
    restart_at: float | None = None  # set while waiting to restart


@dataclass
class Supervisor:
    """Starts, watches and stops the workers; ``spawn(i)`` starts child ``i``."""

    workers: int
    spawn: Callable[[int], subprocess.Popen[bytes]]
    now: Callable[[], float] = time.monotonic
    children: list[_Child] = field(default_factory=list)
    stopping: bool = False
    exit_code: int = 0

    def start(self) -> None:
        self.children = [_Child(i, self.spawn(i), self.now()) for i in range(self.workers)]
        log.info("started %d workers: pids %s", self.workers, [c.proc.pid for c in self.children])

    def stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        """Forward ``signum`` to every running child; stop restarting."""
        if not self.stopping:
            log.info("stop requested (signal %s): stopping %d workers", signum, self.workers)
        self.stopping = True
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.send_signal(signum)

    def step(self) -> bool:
        """Reap and restart children; False once every child has stopped for good."""
        alive = False
        for child in self.children:
            code = child.proc.poll()
            if code is None:
                alive = True
                continue
            if self.stopping or (child.restart_at is None and code == 0):
                self.exit_code = self.exit_code or (code if code >= 0 else 1)  # <0: a signal
                continue
            alive = self._crashed(child, code) or alive
        return alive

    def _crashed(self, child: _Child, code: int) -> bool:
        """Schedule or perform the restart of a crashed child; False if it is given up."""
        now = self.now()
        if child.restart_at is None:
            if code == USAGE_EXIT:
                log.error("worker %d refused its settings (exit 2): stopping all", child.index)
                self.exit_code = USAGE_EXIT
                self.stop()
                return False
            if now - child.started >= HEALTHY_AFTER_S:
                child.failures = 0
            delay = BACKOFF_S[min(child.failures, len(BACKOFF_S) - 1)]
            child.failures += 1
            child.restart_at = now + delay
            log.warning(
                "worker %d (pid %d) exited with %d; restarting in %.0fs",
                child.index,
                child.proc.pid,
                code,
                delay,
            )
        if now >= child.restart_at:
            child.proc, child.started, child.restart_at = self.spawn(child.index), now, None
            log.info("worker %d restarted: pid %d", child.index, child.proc.pid)
        return True


def supervise(settings: Settings, argv: Sequence[str] | None = None, *, poll_s: float = 0.2) -> int:
    """Run ``settings.workers`` children of ``streamer <argv>`` until all stopped.

    ``argv`` is the command line after the program name (default: this process's), so a
    child reads the same ``--config`` file. Returns the exit code for the supervisor.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    environ = dict(os.environ)

    def spawn(index: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "streamer", *args]
        return subprocess.Popen(command, env=child_env(settings, index, environ))

    supervisor = Supervisor(settings.workers, spawn)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    supervisor.start()
    while supervisor.step():
        time.sleep(poll_s)
    log.info("all %d workers stopped", settings.workers)
    return supervisor.exit_code
