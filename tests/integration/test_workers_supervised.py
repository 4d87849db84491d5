"""``STREAMER_WORKERS=2``: one command, two stream processes in one group, real broker and
Redis. Both share the partitions, a ``kill -9`` of one is repaired by a restart, and in
every case each input has its scored output."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from streamer.dev.generator import send_synthetic
from tests.integration.streamer_proc import (
    decode_single_object,
    http_get,
    load_synthetic_features,
    plain_schema,
    read_all,
    start_streamer,
    stop,
    wait_caught_up,
    wait_until,
)

N = 6_000


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(children)


def _free_port_pair() -> int:
    while True:
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port


def _partitions(port: int) -> int:
    status, body = http_get(f"http://127.0.0.1:{port}/readyz")
    return int(json.loads(body).get("partitions", 0)) if status in (200, 503) else 0


def _consumed(port: int) -> float:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return 0.0
    for line in body.splitlines():
        if line.startswith("streamer_events_consumed_total "):
            return float(line.split()[1])
    return 0.0


def _send(bootstrap: str, topic: str, count: int, seed: int, rate: float = 0.0) -> None:
    send_synthetic(
        bootstrap_servers=bootstrap,
        topic=topic,
        count=count,
        rate=rate,
        n_cards=3000,
        n_merchants=300,
        event_seed=seed,
    )


def _assert_every_input_scored(bootstrap: str, topics: dict[str, str], expected: int) -> None:
    txn, scored = plain_schema("transaction_event"), plain_schema("scored_event")
    inputs = {
        decode_single_object(m.value(), txn)["transaction_id"]
        for m in read_all(bootstrap, topics["input_topic"], expected)
    }
    outputs = {
        decode_single_object(m.value(), scored)["transaction_id"]
        for m in read_all(bootstrap, topics["output_topic"], expected)
    }
    assert len(inputs) == expected
    assert inputs - outputs == set(), f"{len(inputs - outputs)} inputs have no output"


@pytest.fixture
def worker_settings(
    run_settings: dict[str, str], redis_url: str, redis_prefix: str
) -> dict[str, str]:
    load_synthetic_features(redis_url, redis_prefix)
    return {**run_settings, "workers": "2", "metrics_port": str(_free_port_pair())}


def test_two_workers_share_the_partitions_and_drain_a_backlog(
    kafka_bootstrap: str,
    topics: dict[str, str],
    group_id: str,
    tmp_path: Path,
    worker_settings: dict[str, str],
) -> None:
    port = int(worker_settings["metrics_port"])
    supervisor = start_streamer(tmp_path / "workers.log", **worker_settings)
    try:
        wait_until(lambda: len(_children(supervisor.pid)) == 2, 30, "two workers", supervisor)
        workers = _children(supervisor.pid)
        # Each worker serves its own port, and the group gives each a share of the partitions.
        wait_until(
            lambda: (
                _partitions(port) + _partitions(port + 1) == 3
                and _partitions(port) > 0
                and _partitions(port + 1) > 0
            ),
            120,
            "both workers assigned",
            supervisor,
        )
        _send(kafka_bootstrap, topics["input_topic"], N, seed=21)
        wait_caught_up(kafka_bootstrap, group_id, topics["input_topic"], 180, supervisor)
        assert _consumed(port) > 0
        assert _consumed(port + 1) > 0
        assert _consumed(port) + _consumed(port + 1) >= N
    finally:
        code = stop(supervisor)
    log = (tmp_path / "workers.log").read_text()
    assert code == 0, log[-3000:]
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers), "a worker outlived it"
    _assert_every_input_scored(kafka_bootstrap, topics, N)


def test_a_killed_worker_is_restarted_and_nothing_is_lost(
    kafka_bootstrap: str,
    topics: dict[str, str],
    group_id: str,
    tmp_path: Path,
    worker_settings: dict[str, str],
    unique: str,
) -> None:
    # Static membership: the restarted worker reclaims its partitions at once.
    settings = {**worker_settings, "group_instance_id": f"w-{unique}", "max_batch_size": "100"}
    port = int(settings["metrics_port"])
    supervisor = start_streamer(tmp_path / "workers.log", **settings)
    try:
        wait_until(lambda: len(_children(supervisor.pid)) == 2, 30, "two workers", supervisor)
        wait_until(
            lambda: _partitions(port) > 0 and _partitions(port + 1) > 0,
            120,
            "both workers assigned",
            supervisor,
        )
        sender = threading.Thread(
            target=_send, args=(kafka_bootstrap, topics["input_topic"], N, 24, 2000.0)
        )
        sender.start()
        wait_until(lambda: _consumed(port) > 0, 60, "worker 0 consuming", supervisor)
        victim = _children(supervisor.pid)[0]  # worker 0: started first, lowest pid
        os.kill(victim, signal.SIGKILL)  # mid-stream, no drain, no commit: work is redone
        wait_until(
            lambda: len(_children(supervisor.pid)) == 2 and victim not in _children(supervisor.pid),
            30,
            "the killed worker restarted",
            supervisor,
        )
        sender.join()
        wait_caught_up(kafka_bootstrap, group_id, topics["input_topic"], 180, supervisor)
    finally:
        code = stop(supervisor)
    log = (tmp_path / "workers.log").read_text()
    assert code == 0, log[-3000:]
    assert "exited with -9; restarting" in log
    _assert_every_input_scored(kafka_bootstrap, topics, N)


def test_a_bad_setting_stops_every_worker_with_exit_2(
    tmp_path: Path, worker_settings: dict[str, str]
) -> None:
    settings = {**worker_settings, "model": "no-such-model@1"}
    supervisor = start_streamer(tmp_path / "workers.log", **settings)
    try:
        code = supervisor.wait(120)
    except subprocess.TimeoutExpired:
        code = stop(supervisor)
    log = (tmp_path / "workers.log").read_text()
    assert code == 2, log[-3000:]
    assert "Traceback" not in log
