"""The launcher's promises: dev-up/dev-down, idempotence, and no orphans after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from confluent_kafka.admin import AdminClient

from streamer.dev.devstack.processes import pid_alive

REPO = Path(__file__).resolve().parents[2]


def _devstack(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "streamer.dev.devstack", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def test_dev_up_twice_then_down_leaves_nothing(tmp_path: Path) -> None:
    first = _devstack(tmp_path, "up")
    assert first.returncode == 0, first.stderr
    env = _read_env(tmp_path / ".dev" / "env")
    import json

    pids = json.loads((tmp_path / ".dev" / "stack.json").read_text())["pids"]
    try:
        assert (
            AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
            .list_topics(timeout=10)
            .brokers
        )
        assert redis.Redis.from_url(env["REDIS_URL"]).ping()
        cli = subprocess.run(
            ["redis-cli", "-u", env["REDIS_URL"], "PING"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert cli.stdout.strip() == "PONG"

        second = _devstack(tmp_path, "up")
        assert second.returncode == 0
        assert "already running" in second.stdout
        assert _read_env(tmp_path / ".dev" / "env") == env
    finally:
        down = _devstack(tmp_path, "down")
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(p) for p in pids)
    assert not (tmp_path / ".dev" / "env").exists()


def test_killed_owner_takes_its_services_along(tmp_path: Path) -> None:
    """A test run killed with SIGKILL (no cleanup code runs) leaves no broker or redis behind."""
    script = (
        "import sys\n"
        "from streamer.dev.devstack.stack import local_stack\n"
        "with local_stack() as e:\n"
        "    print(e.redis_server.pid, flush=True)\n"
        "    import subprocess\n"
        "    pgrep = ['pgrep', '-f', 'kafka.Kafka ' + str(e.workdir)]\n"
        "    print(subprocess.check_output(pgrep).split()[0].decode(), flush=True)\n"
        "    sys.stdin.read()\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
    )
    assert owner.stdout is not None
    redis_pid = int(owner.stdout.readline())
    broker_pid = int(owner.stdout.readline())
    assert pid_alive(redis_pid)
    assert pid_alive(broker_pid)

    owner.send_signal(signal.SIGKILL)
    owner.wait(10)

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (pid_alive(redis_pid) or pid_alive(broker_pid)):
        time.sleep(0.1)
    assert not pid_alive(redis_pid)
    assert not pid_alive(broker_pid)
