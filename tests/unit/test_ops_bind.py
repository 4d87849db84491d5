"""The operations server binds the address it is given (``STREAMER_METRICS_HOST``)."""

from __future__ import annotations

import socket
import time

import pytest
from prometheus_client import CollectorRegistry

from streamer.config.settings import Settings
from streamer.observability.health import OpsServer, Probes


def _probes() -> Probes:
    return Probes(
        heartbeat=time.monotonic,
        subscribed=lambda: True,
        assigned=lambda: 1,
        model_present=lambda: True,
        redis_reachable=lambda: True,
        breaker_state=lambda: "closed",
    )


def _answers(host: str, port: int) -> bool:
    """Linux routes all of 127.0.0.0/8 to loopback: 127.0.0.2 reaches a server bound to
    0.0.0.0, but not one bound to 127.0.0.1."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize(("host", "on_other_address"), [("127.0.0.1", False), ("0.0.0.0", True)])
def test_the_server_listens_on_the_given_address_only(host: str, on_other_address: bool) -> None:
    server = OpsServer(0, CollectorRegistry(), _probes(), host=host)  # port 0: no server
    assert server.port == 0
    with socket.socket() as probe:  # a free port for the real one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = OpsServer(port, CollectorRegistry(), _probes(), host=host)
    try:
        assert _answers("127.0.0.1", port)
        assert _answers("127.0.0.2", port) is on_other_address
    finally:
        server.close()


def test_the_setting_defaults_to_every_interface_and_reads_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().metrics_host == "0.0.0.0"  # containers: kubelet probes, scrapes
    monkeypatch.setenv("STREAMER_METRICS_HOST", "127.0.0.1")
    assert Settings().metrics_host == "127.0.0.1"
    assert "0.0.0.0" in (Settings.model_fields["metrics_host"].description or "")
