"""The Open Inference Protocol's REST routes (``/v2``), on the same app, port and batcher as /v1.

Errors are the protocol's ``{"error": "<message>"}``: 400 for tensors that are not the
model's inputs (the message names the input), 404 for a model or version not served here,
401 without a configured API key (the same keys as /v1), 503 when features are unreachable
and STREAMER_REDIS_REQUIRED is set. Bodies are JSON, or JSON followed by raw tensor bytes
(the binary tensor extension tritonclient uses by default: ``Inference-Header-Content-Length``
says where the JSON ends); outputs come back binary when the request asks for it.

These routes are out of the OpenAPI document (``include_in_schema=False``): their contract
is the protocol's own specification, which tritonclient and KServe's clients implement, and
tests/integration/test_serve_v2.py holds the server to it with those clients.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from streamer.serve import auth
from streamer.serve.middleware import ASGIApp, Receive, Scope, Send
from streamer.serve.oip import inference, wire
from streamer.serve.oip.inference import FeaturesUnavailableError, InferRequest, ModelNotFoundError
from streamer.serve.oip.tensors import TensorError
from streamer.serve.runtime import Runtime
from streamer.serve.tracing import trace_tag

HEADER_LENGTH = "inference-header-content-length"
INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
InferEndpoint = Callable[[Request, str, str], Awaitable[Response]]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


def _denied(runtime: Runtime, request: Request) -> Response | None:
    keys = runtime.options.api_keys
    headers = request.headers
    presented = auth.presented_key(headers.get("authorization"), headers.get("x-api-key"))
    if not keys or auth.allowed(presented, keys):
        return None
    response = _error("missing or unknown API key", 401)
    response.headers["www-authenticate"] = "Bearer"
    return response


def router(runtime: Runtime) -> tuple[APIRouter, InferEndpoint]:
    """The /v2 routes over ``runtime``, and the infer endpoint."""
    api = APIRouter(prefix="/v2", include_in_schema=False)

    @api.get("/health/live")
    async def live() -> Response:
        ok = runtime.batcher.running
        return _json({"live": ok}, 200 if ok else 503)

    @api.get("/health/ready")
    async def ready() -> Response:
        ok = runtime.batcher.running and runtime.model_present()
        return _json({"ready": ok}, 200 if ok else 503)

    @api.get("")
    async def server() -> Response:
        return _json(inference.server_metadata())

    async def metadata(name: str, version: str = "") -> Response:
        try:
            return _json(await inference.model_metadata(runtime, name, version))
        except ModelNotFoundError as exc:
            return _error(str(exc), 404)

    async def model_ready(name: str, version: str = "") -> Response:
        try:
            await inference.resolve(runtime, name, version)
        except ModelNotFoundError as exc:
            return _error(str(exc), 404)
        ok = runtime.batcher.running and runtime.model_present()
        return _json({"name": name, "ready": ok}, 200 if ok else 503)

    async def infer(request: Request, name: str, version: str = "") -> Response:
        if denied := _denied(runtime, request):
            return denied
        body = await request.body()
        try:
            parsed = wire.parse_rest(body, request.headers.get(HEADER_LENGTH))
            call = InferRequest(name, version, parsed.id, parsed.inputs, parsed.outputs)
            result = await inference.infer(runtime, call, trace_tag(request.headers))
        except TensorError as exc:
            return _error(str(exc), 400)
        except ModelNotFoundError as exc:
            return _error(str(exc), 404)
        except FeaturesUnavailableError as exc:
            return _error(str(exc), 503)
        content, header_length = wire.rest_response(result, parsed.binary)
        headers = {"inference-header-content-length": str(header_length)} if header_length else {}
        media = "application/octet-stream" if header_length else "application/json"
        return Response(content, 200, headers, media_type=media)

    for path in ("/models/{name}", "/models/{name}/versions/{version}"):
        api.add_api_route(path, metadata, methods=["GET"])
        api.add_api_route(f"{path}/ready", model_ready, methods=["GET"])
        api.add_api_route(f"{path}/infer", infer, methods=["POST"])
    return api, infer


def install(app: FastAPI, runtime: Runtime) -> None:
    """The /v2 routes on ``app``, the infer route on the direct path (``DirectInfer``)."""
    api, infer = router(runtime)
    app.include_router(api)
    routes = {r.path: r for r in api.routes if isinstance(r, APIRoute)}
    plain, versioned = (
        routes["/v2/models/{name}/infer"],
        routes["/v2/models/{name}/versions/{version}/infer"],
    )
    app.add_middleware(DirectInfer, routes=(plain, versioned), endpoint=infer)


class DirectInfer:
    """``POST /v2/models/{name}[/versions/{version}]/infer`` straight to its endpoint, past
    FastAPI's router and parameter solving, as ``middleware.DirectRoute`` does for
    /v1/score: on one GIL they cost as much as a one-row inference's own work. The
    FastAPI routes stay, named in the scope for the telemetry's route label."""

    def __init__(self, app: ASGIApp, routes: tuple[APIRoute, APIRoute], endpoint: InferEndpoint):
        self.app = app
        self.routes = routes
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = INFER_PATH.match(scope["path"])
            if match is not None:
                name, version = match.groups()
                scope["route"] = self.routes[version is not None]
                response = await self.endpoint(Request(scope, receive), name, version or "")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
