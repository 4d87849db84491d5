"""Server spans: HTTP semantic conventions, continuing the caller's traceparent (in-process)."""

from __future__ import annotations

import asyncio
import time

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from streamer.config.loader import load_settings
from streamer.serve.app import create_app
from streamer.serve.runtime import ServeOptions, build_runtime
from streamer.testing import sample_event
from tests.unit.serve.conftest import MODELS

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def test_server_span_continues_the_callers_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = load_settings(
        None, redis_url="redis://127.0.0.1:1/0", redis_timeout_ms=20, models_dir=MODELS
    )
    runtime = build_runtime(settings, ServeOptions())
    app = create_app(runtime, provider.get_tracer("test"))

    async def call() -> httpx.Response:
        runtime.batcher.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            event = sample_event(event_time=int(time.time() * 1000))
            response = await client.post(
                "/v1/score", json=event, headers={"traceparent": PARENT, "user-agent": "t/1"}
            )
        await runtime.batcher.stop()
        return response

    response = asyncio.run(call())
    assert response.status_code == 200
    assert response.json()["feature_status"] == "DEGRADED"  # nothing listens on port 1
    (span,) = exporter.get_finished_spans()
    assert span.name == "POST /v1/score"
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.route"] == "/v1/score"
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.path"] == "/v1/score"
    assert attributes["user_agent.original"] == "t/1"
    assert "http.method" not in attributes  # the old names are gone
    assert response.headers["server-timing"].startswith("app;dur=")
