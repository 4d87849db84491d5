"""What ``streamer run`` tells an operator at start-up and where it listens: the start-up
line names the model and the shadow, and ``STREAMER_METRICS_HOST`` decides the address of
``/metrics``, ``/healthz`` and ``/readyz``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streamer.dev.devstack.processes import free_port
from tests.integration.streamer_proc import (
    http_get,
    refused_start,
    start_streamer,
    stop,
    wait_until,
)


@pytest.fixture
def settings(
    kafka_bootstrap: str, redis_url: str, make_topic: Callable[..., str]
) -> dict[str, str]:
    return {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "redis_url": redis_url,
        "input_topic": make_topic("in"),
        "output_topic": make_topic("out"),
        "dlq_topic": make_topic("dlq", partitions=1),
        "log_format": "console",
    }


def test_loopback_host_serves_probes_on_loopback_only_and_the_log_names_the_shadow(
    settings: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "streamer.log"
    proc = start_streamer(
        log,
        **settings,
        model="fraud-gbt@2",
        shadow_model="fraud-gbt@1",
        metrics_host="127.0.0.1",
        metrics_port=str(port),
    )
    try:
        wait_until(
            lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 60, "/healthz", proc
        )
        # all of 127.0.0.0/8 is loopback on Linux: a server bound to 0.0.0.0 would answer here
        assert http_get(f"http://127.0.0.2:{port}/healthz")[0] == 0
        wait_until(lambda: "scoring " in log.read_text(), 30, "the start-up line", proc)
    finally:
        assert stop(proc) == 0
    (line,) = [x for x in log.read_text().splitlines() if "scoring " in x and " -> " in x]
    assert "with model fraud-gbt@2 (spec fraud-gbt@2)" in line, line
    assert "shadow fraud-gbt@1 (spec fraud-gbt@1)" in line, line


def test_an_address_that_cannot_be_bound_is_one_line_naming_the_setting(
    settings: dict[str, str],
) -> None:
    code, lines, stderr = refused_start(
        **settings, metrics_host="192.0.2.1", metrics_port=str(free_port())
    )
    assert code == 2, stderr
    assert len(lines) == 1, stderr
    assert "192.0.2.1" in lines[0]
    assert "STREAMER_METRICS_HOST" in lines[0]
