"""The launcher's promises: dev-up (all four services) / dev-down, idempotence, a
``.dev/env`` a shell can source, and no orphans after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from streamer.dev.devstack.processes import group_members, pid_alive
from tests.integration.streamer_proc import http_get

REPO = Path(__file__).resolve().parents[2]


def _devstack(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "streamer.dev.devstack", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _sourced(path: Path) -> dict[str, str]:
    """The variables a shell has after ``source .dev/env`` (the file is a shell script)."""
    shell = subprocess.run(
        ["bash", "-c", f'source "{path}" && env -0'],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        check=True,
    )
    pairs = (item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)
    return {k: v for k, v in pairs if k not in ("PATH", "PWD", "SHLVL", "_")}


def test_dev_up_twice_then_down_leaves_nothing(tmp_path: Path) -> None:
    first = _devstack(tmp_path, "up")
    assert first.returncode == 0, first.stderr
    env = _sourced(tmp_path / ".dev" / "env")
    pids = json.loads((tmp_path / ".dev" / "stack.json").read_text())["pids"]
    try:
        assert set(env) == {
            "STREAMER_KAFKA_BOOTSTRAP_SERVERS",
            "STREAMER_REDIS_URL",
            "STREAMER_SCHEMA_REGISTRY_URL",
            "KAFKA_BOOTSTRAP_SERVERS",
            "REDIS_URL",
            "MLFLOW_TRACKING_URI",
        }
        assert env["STREAMER_KAFKA_BOOTSTRAP_SERVERS"] == env["KAFKA_BOOTSTRAP_SERVERS"]
        assert env["STREAMER_REDIS_URL"] == env["REDIS_URL"]
        assert (
            AdminClient({"bootstrap.servers": env["STREAMER_KAFKA_BOOTSTRAP_SERVERS"]})
            .list_topics(timeout=10)
            .brokers
        )
        assert redis.Redis.from_url(env["STREAMER_REDIS_URL"]).ping()
        cli = subprocess.run(
            ["redis-cli", "-u", env["REDIS_URL"], "PING"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert cli.stdout.strip() == "PONG"
        registry = SchemaRegistryClient({"url": env["STREAMER_SCHEMA_REGISTRY_URL"]})
        assert registry.get_subjects() == []
        assert http_get(f"{env['MLFLOW_TRACKING_URI']}/health")[0] == 200
        assert _devstack(tmp_path, "status").returncode == 0

        second = _devstack(tmp_path, "up")
        assert second.returncode == 0
        assert "already running" in second.stdout
        assert _sourced(tmp_path / ".dev" / "env") == env
    finally:
        down = _devstack(tmp_path, "down")
    assert down.returncode == 0, down.stderr
    assert not any(group_members(p) for p in pids), "a server or one of its workers survived"
    assert not (tmp_path / ".dev" / "env").exists()
    assert _devstack(tmp_path, "status").returncode == 1
    _assert_make_status_is_quiet_when_down(tmp_path)


def _assert_make_status_is_quiet_when_down(cwd: Path) -> None:
    """``make dev-status`` reports, and ``make`` prints no error of its own (issue 10)."""
    make = subprocess.run(
        ["make", "-s", "-f", str(REPO / "Makefile"), "dev-status", f"PY={sys.executable}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert (make.returncode, make.stderr) == (0, ""), make.stderr
    assert "not running" in make.stdout


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
        time.sleep(0.1)  # why: poll interval of the wait for both servers to die
    assert not pid_alive(redis_pid)
    assert not pid_alive(broker_pid)
