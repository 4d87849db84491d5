"""How ``streamer serve`` configures uvicorn (no server started)."""

from __future__ import annotations

from fastapi import FastAPI

from streamer.serve.runtime import ServeOptions
from streamer.serve.server import uvicorn_config


def test_idle_keep_alive_connections_outlast_the_callers_pools() -> None:
    # uvicorn's default (5 s) closes pooled connections under callers that reuse them
    # after a pause: the request sent as the server closes fails.
    config = uvicorn_config(FastAPI(), ServeOptions())
    assert config.timeout_keep_alive == 75
    assert config.timeout_keep_alive > 60  # common pool and load-balancer idle timeouts


def test_keep_alive_and_grace_periods_come_from_the_options() -> None:
    config = uvicorn_config(FastAPI(), ServeOptions(keep_alive_s=120, graceful_timeout_s=12.5))
    assert config.timeout_keep_alive == 120
    assert config.timeout_graceful_shutdown == 12
    assert config.access_log is False
