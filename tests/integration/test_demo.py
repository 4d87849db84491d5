"""``make demo`` in a newcomer's shell: whatever is set there, the demo works or says in one
line why not.

The first test runs the real demo (its own broker and redis-server, a real ``streamer run``)
with the traps that used to end in tracebacks: port 9464 taken, ``REDIS_URL`` set without
``KAFKA_BOOTSTRAP_SERVERS``, and a garbage ``STREAMER_*`` variable. The others check that
failures are one line, with no traceback and no raw librdkafka lines.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.dev.devstack.processes import free_port

REPO = Path(__file__).resolve().parents[2]


def _demo(env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")
    }
    return subprocess.run(
        [sys.executable, "-m", "streamer.dev.demo"],
        env={**base, "PYTHONPATH": str(REPO), "STREAMER_DEV_NO_DOCKER": "1", **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def port_9464_taken() -> Iterator[None]:
    """Port 9464 (streamer's and the OTel Prometheus exporter's default) is in use."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 9464))
        sock.listen()
    except OSError:
        pass  # already taken by someone else: the condition holds all the same
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(OSError, match="in use"):
        probe.bind(("127.0.0.1", 9464))
    probe.close()
    yield
    sock.close()


def test_demo_ignores_the_users_environment_and_a_taken_port(port_9464_taken: None) -> None:
    proc = _demo(
        {
            "DEMO_EVENTS": "300",
            "DEMO_RATE": "1000",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "STREAMER_MAX_BATCH_SIZE": "garbage",
            "STREAMER_REDIS_URL": "redis://127.0.0.1:1/0",
            "STREAMER_METRICS_PORT": "9464",
        }
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "scored 312 events" in output  # 300 and the card-testing burst's 12
    assert "Traceback" not in output
    burst = output[output.index("a card-testing burst, scored live") :].splitlines()
    rows = [line.strip("│ ").split("│") for line in burst if line.startswith("│")]
    decisions = [row[-1].strip() for row in rows]
    counts = [row[2].strip() for row in rows]
    assert counts == [str(i) for i in range(12)]  # the state moves with the burst
    assert set(decisions[5:]) <= {"REVIEW", "DECLINE"}  # by the sixth, velocity flags it
    assert "%3|" not in output


def _one_line_failure(proc: subprocess.CompletedProcess[str]) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    assert "|FAIL|" not in output, "librdkafka's lines belong in the client log"
    (line,) = [line for line in output.splitlines() if line.startswith("demo:")]
    return line


def test_partial_environment_with_demo_use_env_is_one_line() -> None:
    line = _one_line_failure(
        _demo({"DEMO_USE_ENV": "1", "REDIS_URL": "redis://127.0.0.1:1/0"}, timeout=60)
    )
    assert "KAFKA_BOOTSTRAP_SERVERS" in line


def test_unreachable_broker_is_one_line(redis_url: str) -> None:
    broker = f"127.0.0.1:{free_port()}"
    line = _one_line_failure(
        _demo(
            {"DEMO_USE_ENV": "1", "KAFKA_BOOTSTRAP_SERVERS": broker, "REDIS_URL": redis_url},
            timeout=120,
        )
    )
    assert broker in line


@pytest.mark.parametrize("value", ["many", "0"])
def test_bad_demo_settings_are_one_line(value: str) -> None:
    line = _one_line_failure(_demo({"DEMO_EVENTS": value}, timeout=60))
    assert "DEMO_EVENTS" in line
