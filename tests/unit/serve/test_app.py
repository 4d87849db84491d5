"""The ASGI application without a server or Redis: routing, labels and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI

from streamer.config.settings import Settings
from streamer.serve.app import create_app
from streamer.serve.runtime import ServeOptions, build_runtime
from tests.unit.serve.conftest import MODELS


@pytest.fixture(scope="module")
def app() -> FastAPI:
    # Nothing connects while building; Redis is reached on the first batch only.
    settings = Settings(models_dir=MODELS, redis_url="redis://127.0.0.1:1/0")
    return create_app(build_runtime(settings, ServeOptions()))


def _call(
    app: FastAPI, method: str, path: str, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def test_score_route_is_documented_in_the_openapi_document(app: FastAPI) -> None:
    status, _, body = _call(app, "GET", "/openapi.json")
    assert status == 200
    assert b'"/v1/score"' in body
    assert b"ScoreResponse" in body


def test_score_route_refuses_other_methods_as_fastapi_does(app: FastAPI) -> None:
    status, headers, body = _call(app, "GET", "/v1/score")
    assert (status, headers["allow"], body) == (405, "POST", b'{"detail":"Method Not Allowed"}')
    assert "server-timing" in headers


def test_requests_are_labelled_with_their_route(app: FastAPI) -> None:
    _call(app, "GET", "/v1/score")
    metrics = _call(app, "GET", "/metrics")[2].decode()
    served = 'http_route="/v1/score"' in metrics and 'http_response_status_code="405"' in metrics
    assert served, "the plain route in front of FastAPI's must name itself"
    assert 'http_response_status_code="405",http_route="unmatched"' not in metrics


def test_score_route_answers_past_fastapi_routing_with_its_telemetry(app: FastAPI) -> None:
    status, headers, body = _call(app, "POST", "/v1/score", b'{"transaction_id": ')
    assert status == 422
    assert body.startswith(b'{"error_class":"InvalidJson"')
    assert headers["x-request-id"]
    assert headers["server-timing"].startswith("app;dur=")
    metrics = _call(app, "GET", "/metrics")[2].decode()
    assert 'http_response_status_code="422",http_route="/v1/score"' in metrics
    assert 'streamer_serve_decisions_total{decision="rejected"}' in metrics


def test_score_route_keeps_the_body_limit(app: FastAPI) -> None:
    status, headers, body = _call(app, "POST", "/v1/score", b"x" * 1_000_001)
    assert (status, headers["connection"]) == (413, "close")
    assert b"Oversized" in body
