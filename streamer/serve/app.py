"""The FastAPI application: scoring routes, model info, probes and metrics on one port.

Bodies are validated straight from bytes by pydantic (``TypeAdapter.validate_json``), the
request schema generated from the Avro schema (``serve.schema``); the OpenAPI document
shows that same schema. Scoring goes through the ``Batcher``, which merges concurrent
requests into one kernel call on the event loop.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from opentelemetry.trace import Tracer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response

from streamer import __version__
from streamer.errors import Rejection
from streamer.model.registry import list_models
from streamer.serve import auth, bodies, openapi, responses
from streamer.serve.middleware import BodyLimit, DirectRoute, Telemetry
from streamer.serve.oip import rest as oip_rest
from streamer.serve.runtime import Runtime
from streamer.serve.schema import batched_transaction, to_event, transaction_request
from streamer.serve.tracing import trace_tag

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# Fresh request ids: a random per-process prefix and a counter, as unique as uuid4's hex
# (same length) without a getrandom() system call per request.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


def request_id(request: Request) -> str:
    """The caller's ``X-Request-ID`` when it is sane, else a fresh one."""
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def create_app(runtime: Runtime, tracer: Tracer | None = None) -> FastAPI:
    """The API over ``runtime``; wrapped in telemetry and the body limit."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime.batcher.start()
        runtime.models.start()  # hot swap: the kernel takes a new version between batches
        rpc = None
        if runtime.settings.serve_grpc_port:  # grpcio only imported when asked for
            from streamer.serve.oip import grpc_service

            rpc = await grpc_service.start(runtime, tracer)
        try:
            yield
        finally:  # uvicorn lets in-flight requests finish before this runs
            if rpc is not None:
                await rpc.stop(runtime.options.graceful_timeout_s)
            await runtime.batcher.stop()
            await run_in_threadpool(runtime.close)

    app = FastAPI(
        title="streamer scoring API",
        version=__version__,
        summary="Card-payment fraud scores on the stream's kernel, features and model.",
        lifespan=lifespan,
        # Spans and HTTP metrics are ours (middleware.Telemetry); FastAPI's own would
        # double them and cost a provider lookup per request even when off.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    score = _scoring_routes(app, runtime)
    _operations_routes(app, runtime)
    oip_rest.install(app, runtime)  # /v2: the Open Inference Protocol
    # Innermost first. /v1/score goes past FastAPI's routing (DirectRoute): the hot path;
    # its FastAPI route documents it.
    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == "/v1/score")
    app.add_middleware(DirectRoute, route=route, endpoint=score)
    app.add_middleware(BodyLimit, limit=runtime.options.max_body_bytes)
    app.add_middleware(Telemetry, metrics=runtime.http, tracer=tracer)
    return app


def _denied(runtime: Runtime, request: Request) -> Response | None:
    """401 unless the request presents a configured API key (or none are configured).

    The headers are read here rather than declared as FastAPI ``Header`` parameters: the
    dependency solving those need costs more per request than the scoring route's own work.
    """
    keys = runtime.options.api_keys
    if not keys:
        return None
    headers = request.headers
    if auth.allowed(
        auth.presented_key(headers.get("authorization"), headers.get("x-api-key")), keys
    ):
        return None
    body = {"error_class": "Unauthorized", "message": "missing or unknown API key", "stage": ""}
    response = responses.json(body, 401)
    response.headers["www-authenticate"] = "Bearer"
    return response


def _scoring_routes(app: FastAPI, runtime: Runtime) -> Callable[[Request], Awaitable[Response]]:
    """The scoring routes on ``app``; returns the /v1/score endpoint for ``DirectRoute``."""
    event_model, batch_model, secured = _request_models(app, runtime)
    one = TypeAdapter(event_model)
    many = TypeAdapter(batch_model)
    redis_required = runtime.settings.redis_required
    decided = runtime.http.decided

    @app.post(
        "/v1/score",
        response_model=bodies.ScoreResponse,
        responses=openapi.scoring_errors(batch=False, secured=secured),
        openapi_extra=openapi.request_body("TransactionEvent"),
    )
    async def score(request: Request) -> Response:
        """Score one TransactionEvent: score, decision, thresholds, model, feature status."""
        if denied := _denied(runtime, request):
            return denied
        rid = request_id(request)
        try:
            event = to_event(one.validate_json(await request.body()))
        except ValidationError as exc:
            decided("rejected")
            return responses.invalid_request(exc, rid)
        (outcome,) = await runtime.batcher.submit([event], trace_tag(request.headers))
        decided("rejected" if isinstance(outcome, Rejection) else outcome["decision"])
        return responses.outcome_response(outcome, rid, redis_required=redis_required)

    @app.post(
        "/v1/score:batch",
        response_model=bodies.BatchResponse,
        responses=openapi.scoring_errors(batch=True, secured=secured),
        openapi_extra=openapi.request_body("ScoreBatchRequest"),
    )
    async def score_batch(request: Request) -> Response:
        """Score up to --max-request-events events; one result per event, in order."""
        if denied := _denied(runtime, request):
            return denied
        rid = request_id(request)
        try:
            parsed = many.validate_json(await request.body())
        except ValidationError as exc:
            return responses.invalid_request(exc, rid)
        events = [to_event(e) for e in getattr(parsed, "events")]  # noqa: B009
        outcomes = await runtime.batcher.submit(events, trace_tag(request.headers))
        results = []
        for outcome in outcomes:
            if isinstance(outcome, Rejection):
                decided("rejected")
                results.append({"status": "rejected", **responses.rejection_body(outcome)})
            elif redis_required and outcome["feature_status"] == "DEGRADED":
                return responses.outcome_response(outcome, rid, redis_required=True)
            else:
                decided(outcome["decision"])
                results.append({"status": "scored", **responses.scored_body(outcome)})
        return responses.json({"request_id": rid, "results": results}, 200, rid)

    return score


def _operations_routes(app: FastAPI, runtime: Runtime) -> None:
    @app.get("/v1/models", response_model=bodies.Models)
    async def models() -> dict[str, Any]:
        """The model serving now (as the stream's ``STREAMER_MODEL`` resolves) and its registry."""
        kernel = runtime.kernel
        meta = kernel.model.metadata
        entries = await run_in_threadpool(list_models, runtime.settings.models_dir)
        return {
            "serving": {
                "spec": runtime.settings.model,
                "name": meta.name,
                "version": meta.version,
                "sha256": meta.sha256,
                "review_threshold": kernel.stamp.review_threshold,
                "decline_threshold": kernel.stamp.decline_threshold,
                "features": list(meta.feature_names),
            },
            "shadow": runtime.models.readiness()["shadow_version"],
            "refused": runtime.models.readiness()["model_refused"],
            "registry": [
                {
                    "name": e.name,
                    "version": e.version,
                    "aliases": list(e.aliases),
                    "usable": e.problem is None,
                }
                for e in entries
                if e.name == meta.name
            ],
        }

    @app.get("/healthz", **openapi.probe(bodies.Health, "the batcher is not running"))
    async def healthz() -> Response:
        """200 while the batcher runs. Batches are scored on the event loop, so one stuck
        in the kernel leaves this unanswered: the probe's timeout fails it."""
        ok = runtime.batcher.running
        return responses.json({"status": "ok" if ok else "fail"}, 200 if ok else 503)

    @app.get("/readyz", **openapi.probe(bodies.Readiness, "not ready: see the checks"))
    async def readyz() -> Response:
        """200 when the model is loaded and the worker runs; Redis down only with
        STREAMER_REDIS_REQUIRED (otherwise answers are DEGRADED, not refused)."""
        redis_ok = await run_in_threadpool(runtime.redis_ok)
        checks = {
            "model": "loaded" if runtime.model_present() else "missing",
            "worker": "running" if runtime.batcher.running else "stopped",
            "redis": "ok" if redis_ok else "degraded",
            "breaker": runtime.cache.breaker.state,
        }
        ok = checks["model"] == "loaded" and checks["worker"] == "running"
        ok = ok and (redis_ok or not runtime.settings.redis_required)
        return responses.json({"status": "ok" if ok else "fail", **checks}, 200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse, **openapi.METRICS)
    async def metrics() -> Response:
        """Prometheus text: the stream's kernel metrics plus HTTP request metrics."""
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)


def _request_models(
    app: FastAPI, runtime: Runtime
) -> tuple[type[BaseModel], type[BaseModel], bool]:
    """The request models of /v1/score and /v1/score:batch, named in ``app``'s document
    with the API-key schemes when keys are configured (the third value)."""
    event_model = transaction_request()
    batch_model = _batch_model(batched_transaction(), runtime.options.max_request_events)
    secured = bool(runtime.options.api_keys)
    openapi.add_components(
        app,
        {"TransactionEvent": event_model, "ScoreBatchRequest": batch_model},
        ("/v1/score", "/v1/score:batch") if secured else (),
    )
    return event_model, batch_model, secured


def _batch_model(event_model: type[BaseModel], limit: int) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        "ScoreBatchRequest",
        __config__=ConfigDict(extra="forbid"),
        events=(list[event_model], Field(min_length=1, max_length=limit)),  # type: ignore[valid-type]
    )
    return model
