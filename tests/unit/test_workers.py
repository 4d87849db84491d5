"""The workers supervisor's decisions, with fake child processes and a fake clock."""

from __future__ import annotations

import signal
import socket
from typing import Any

import pytest

from streamer.config.settings import Settings
from streamer.service.workers import BACKOFF_S, Supervisor, child_env


class FakeProc:
    """A child: running until ``exit`` is called; records the signals it was sent."""

    pids = iter(range(1000, 2000))

    def __init__(self) -> None:
        self.pid = next(FakeProc.pids)
        self.code: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.code

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        self.code = 0  # a clean stop


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _supervisor(workers: int = 2) -> tuple[Supervisor, list[tuple[int, FakeProc]], Clock]:
    spawned: list[tuple[int, FakeProc]] = []
    clock = Clock()

    def spawn(index: int) -> Any:
        proc = FakeProc()
        spawned.append((index, proc))
        return proc

    supervisor = Supervisor(workers, spawn, now=clock)
    supervisor.start()
    return supervisor, spawned, clock


def _settings(**values: Any) -> Settings:
    base = {"input_topic": "in", "output_topic": "out", "metrics_port": 0, "group_instance_id": ""}
    return Settings(**{**base, **values})


@pytest.mark.parametrize(
    ("values", "index", "expected"),
    [
        ({"metrics_port": 9464}, 1, {"STREAMER_METRICS_PORT": "9465"}),
        ({"metrics_port": 0}, 1, {}),
        ({"group_instance_id": "pod-a"}, 2, {"STREAMER_GROUP_INSTANCE_ID": "pod-a-2"}),
        (
            {"group_instance_id": "auto"},
            0,
            {"STREAMER_GROUP_INSTANCE_ID": f"{socket.gethostname()}-0"},
        ),
        (
            {"processing_guarantee": "exactly-once", "transactional_id": "tx"},
            3,
            {"STREAMER_TRANSACTIONAL_ID": "tx-3"},
        ),
    ],
)
def test_each_child_gets_its_own_identities(
    values: dict[str, Any], index: int, expected: dict[str, str]
) -> None:
    env = child_env(_settings(**values), index, {"PATH": "/bin", "STREAMER_WORKERS": "4"})
    assert env["STREAMER_WORKERS"] == "1"  # a child never supervises
    assert env["PATH"] == "/bin"
    own = {k: v for k, v in env.items() if k not in ("PATH", "STREAMER_WORKERS")}
    assert own == expected


def test_at_least_once_children_get_no_transactional_id() -> None:
    env = child_env(_settings(transactional_id="tx"), 1, {})
    assert "STREAMER_TRANSACTIONAL_ID" not in env


def test_a_crashed_child_restarts_after_a_growing_backoff() -> None:
    supervisor, spawned, clock = _supervisor()
    first = spawned[0][1]
    first.code = -9
    assert supervisor.step()
    assert len(spawned) == 2  # not yet: backing off
    clock.t += BACKOFF_S[0]
    supervisor.step()
    assert [i for i, _ in spawned] == [0, 1, 0]
    spawned[-1][1].code = 1  # crashes again at once: the next wait is longer
    supervisor.step()
    clock.t += BACKOFF_S[0]
    supervisor.step()
    assert len(spawned) == 3
    clock.t += BACKOFF_S[1] - BACKOFF_S[0]
    supervisor.step()
    assert len(spawned) == 4


def test_stop_forwards_the_signal_and_ends_when_all_stopped() -> None:
    supervisor, spawned, _ = _supervisor()
    supervisor.stop(signal.SIGINT)
    assert [p.signals for _, p in spawned] == [[signal.SIGINT], [signal.SIGINT]]
    assert not supervisor.step()
    assert supervisor.exit_code == 0


def test_a_child_refusing_its_settings_stops_all_with_exit_2() -> None:
    supervisor, spawned, clock = _supervisor()
    spawned[1][1].code = 2
    supervisor.step()
    clock.t += 100
    assert not supervisor.step()
    assert supervisor.exit_code == 2
    assert len(spawned) == 2  # never restarted
    assert spawned[0][1].signals == [signal.SIGTERM]
