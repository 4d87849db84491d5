"""The launcher's pure parts: broker settings and where services come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.dev.devstack import stack
from streamer.dev.devstack.kafka import server_properties
from streamer.dev.devstack.processes import free_port, pid_alive


def test_broker_settings_fit_a_single_node_test_broker(tmp_path: Path) -> None:
    props = server_properties(tmp_path / "data", 9092, 9093)

    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "1", key


def test_addresses_from_the_environment_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setattr(stack, "docker_available", lambda: pytest.fail("must not probe Docker"))

    with stack.acquire() as endpoints:
        assert (endpoints.kafka_bootstrap, endpoints.redis_url, endpoints.source) == (
            "broker:9092",
            "redis://cache:6379/0",
            "env",
        )


def test_half_an_environment_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.delenv("REDIS_URL", raising=False)

    with pytest.raises(RuntimeError, match="REDIS_URL"), stack.acquire():
        pass


def test_free_port_is_bindable_and_pid_alive_knows_the_living() -> None:
    import os
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert pid_alive(os.getpid())
    assert not pid_alive(2**22 + 12345)
