"""ASGI middleware around the API: telemetry (server span, metrics, Server-Timing), the
request body limit, and the direct path of the scoring route.

Written as plain ASGI rather than taken from opentelemetry-instrumentation-asgi: that
package still emits the old HTTP attribute names unless an opt-in variable is set, and
records two extra internal spans per request; the spans here use the current HTTP semantic
conventions (``http.request.method``, ``url.path``, ``http.route``,
``http.response.status_code``…), continue the caller's ``traceparent``, and cost nothing
when tracing is off. ``Server-Timing: app;dur=<ms>`` lets a load generator read the
server-side latency of every response.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.requests import Request
from starlette.responses import Response

from streamer.serve.metrics import HttpMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PROPAGATOR = TraceContextTextMapPropagator()


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")


class Telemetry:
    """Per request: a SERVER span (when tracing is on), the duration metric, Server-Timing."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, tracer: Tracer | None) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                ms = (time.perf_counter() - started) * 1000.0
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"server-timing", f"app;dur={ms:.3f}".encode()),
                ]
            await send(message)

        try:
            if self.tracer is None:
                await self.app(scope, receive, timed_send)
            else:
                await self._traced(scope, receive, timed_send, status)
        finally:
            self.metrics.observe(
                scope["method"], _route(scope), status[0], time.perf_counter() - started
            )

    async def _traced(self, scope: Scope, receive: Receive, send: Send, status: list[int]) -> None:
        assert self.tracer is not None
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        with self.tracer.start_as_current_span(
            method,
            context=_PROPAGATOR.extract(headers),
            kind=SpanKind.SERVER,
            attributes=_request_attributes(scope, headers),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self.app(scope, receive, send)
            finally:
                route = _route(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status[0])
                if status[0] >= 500:
                    span.set_attribute("error.type", str(status[0]))
                    span.set_status(Status(StatusCode.ERROR))


def _request_attributes(scope: Scope, headers: dict[str, str]) -> dict[str, Any]:
    server = scope.get("server") or ("", 0)
    client = scope.get("client") or ("", 0)
    attributes: dict[str, Any] = {
        "http.request.method": scope["method"],
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
        "server.address": server[0],
        "server.port": server[1],
        "client.address": client[0],
    }
    if "user-agent" in headers:
        attributes["user_agent.original"] = headers["user-agent"][:256]
    return attributes


class BodyLimit:
    """Refuses a body above ``limit`` bytes with 413, before the application parses it.

    A declared ``Content-Length`` above the limit is refused at once; a chunked body is
    read up to the limit and refused when it goes over. Bodies within it are replayed.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._refuse(send)
                return
        replay = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps(
            {
                "error_class": "Oversized",
                "message": f"request body is larger than {self.limit} bytes "
                "(split it, or raise streamer serve --max-body-bytes)",
                "stage": "decode",
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class DirectRoute:
    """Hands ``POST <route.path>`` straight to its endpoint, past the routing underneath.

    Inside the telemetry and body limit, so those still apply; FastAPI's exception
    middleware, exit stacks, router and endpoint wrapper are skipped: on the scoring route
    they cost about as much Python time per request as the route's own work, on a process
    whose one GIL both HTTP and scoring share. The endpoint takes a ``Request`` and returns
    a ``Response`` (no dependencies, no exceptions of FastAPI's kind); the FastAPI route of
    the same path documents it in the OpenAPI schema and is the one named in the scope.
    """

    def __init__(
        self,
        app: ASGIApp,
        route: Any,
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> None:
        self.app = app
        self.route = route
        self.path = str(route.path)
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path and scope["method"] == "POST":
            scope["route"] = self.route
            response = await self.endpoint(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
