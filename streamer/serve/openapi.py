"""What the OpenAPI document says beyond FastAPI's defaults: request bodies as named
components, each status with the body (and error classes) it carries, real media types.

The scoring routes read their bodies straight from bytes (``TypeAdapter.validate_json``),
so FastAPI cannot see their models: ``request_body`` refers to a component and
``add_components`` puts the request models' JSON Schemas there, so a generated client gets
``TransactionEvent`` and ``ScoreBatchRequest`` types by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from streamer.serve import bodies

Responses = dict[int | str, dict[str, Any]]
_REF = "#/components/schemas/{model}"


def _error(model: Any, description: str) -> dict[str, Any]:
    return {"model": model, "description": description}


def scoring_errors(*, batch: bool, secured: bool) -> Responses:
    """The error statuses of a scoring route and their bodies (401 only with API keys)."""
    invalid = (
        "Not JSON, or not a ScoreBatchRequest (a wrong type, a missing or unknown field, "
        "too many events): InvalidJson or InvalidEvent"
        if batch
        else "Not JSON or not a TransactionEvent (InvalidJson, InvalidEvent, stage decode), "
        "or an event that breaks a rule its schema states (the class named in the field's "
        "description, stage validate)"
    )
    unauthorized = _error(bodies.Unauthorized, "Missing or unknown API key")
    return {
        **({401: unauthorized} if secured else {}),
        413: _error(bodies.Oversized, "Body above --max-body-bytes"),
        422: _error(bodies.InvalidBatch if batch else bodies.InvalidEvent, invalid),
        500: _error(bodies.ScoringFailed, "Scoring this event alone raised (enrich or score)"),
        503: _error(bodies.Unavailable, "Redis down and STREAMER_REDIS_REQUIRED=true"),
    }


def probe(model: type[BaseModel], failing: str) -> dict[str, Any]:
    """The document of a probe route: 200 and 503 with the same JSON body."""
    return {"response_model": model, "responses": {503: _error(model, failing)}}


METRICS: dict[str, Any] = {
    "responses": {
        200: {
            "description": "Prometheus text exposition format (version 1.0.0 or 0.0.4)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
}


def request_body(name: str) -> dict[str, Any]:
    """``openapi_extra`` of a route whose JSON body is the component ``name``."""
    schema = {"$ref": _REF.format(model=name)}
    content = {"application/json": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "A key of --api-keys-file"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
"""The two ways a caller presents an API key (``serve.auth``); either one will do."""


def add_components(
    app: FastAPI, models: dict[str, type[BaseModel]], secured: tuple[str, ...] = ()
) -> None:
    """Put the JSON Schemas of ``models`` under ``components/schemas`` of ``app``'s document,
    and the API-key schemes on the ``secured`` paths' operations (none: no keys configured)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            components = document.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for name, model in models.items():
                schema = model.model_json_schema(ref_template=_REF)
                schemas.update(schema.pop("$defs", {}))
                schemas[name] = schema
            if secured:
                components["securitySchemes"] = SECURITY_SCHEMES
            for path in secured:
                for operation in document["paths"][path].values():
                    operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
