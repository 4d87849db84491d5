"""The OpenAPI document names every route with its real media types and bodies, and states
its limits in JSON Schema a client generator and a validator understand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from streamer.config.settings import Settings
from streamer.scoring import limits
from streamer.serve.app import create_app
from streamer.serve.auth import read_api_keys
from streamer.serve.bodies import DECODE_CLASSES
from streamer.serve.runtime import ServeOptions, build_runtime
from tests.unit.serve.conftest import MODELS

MAX_EVENTS = 7


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    settings = Settings(models_dir=MODELS, redis_url="redis://127.0.0.1:1/0")
    app: FastAPI = create_app(build_runtime(settings, ServeOptions(max_request_events=MAX_EVENTS)))
    return app.openapi()


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for value in node.values() for k in _keys(value)}
    if isinstance(node, list):
        return {k for value in node for k in _keys(value)}
    return set()


def test_every_route_is_documented_with_its_media_types(document: dict[str, Any]) -> None:
    media = {
        (path, method): {
            status: set(answer.get("content", {}))
            for status, answer in operation["responses"].items()
        }
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert set(media) == {
        ("/v1/score", "post"),
        ("/v1/score:batch", "post"),
        ("/v1/models", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }
    assert media[("/metrics", "get")] == {"200": {"text/plain"}}
    for route in ("/healthz", "/readyz"):
        assert media[(route, "get")] == {"200": {"application/json"}, "503": {"application/json"}}
    for route in ("/v1/score", "/v1/score:batch"):
        statuses = media[(route, "post")]
        assert set(statuses) == {"200", "413", "422", "500", "503"}
        assert all(types == {"application/json"} for types in statuses.values())


def test_the_document_is_openapi_3_1_with_only_json_schema_keywords(
    document: dict[str, Any],
) -> None:
    assert document["openapi"].startswith("3.1")
    # pydantic writes a bound it cannot place on a JSON type as "ge"/"le": unknown to
    # JSON Schema, so a generator or validator would ignore the limit.
    assert not _keys(document["components"]) & {"ge", "le", "gt", "lt", "min_length"}


def _error_classes(document: dict[str, Any], path: str, status: str) -> list[str]:
    response = document["paths"][path]["post"]["responses"][status]
    ref = response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    error_class = document["components"]["schemas"][ref]["properties"]["error_class"]
    return list(error_class["enum"]) if "enum" in error_class else [error_class["const"]]


def test_the_error_bodies_name_their_classes(document: dict[str, Any]) -> None:
    assert _error_classes(document, "/v1/score", "422") == [
        *DECODE_CLASSES,
        *limits.VALIDATION_CLASSES,
    ]
    assert _error_classes(document, "/v1/score:batch", "422") == list(DECODE_CLASSES)
    assert _error_classes(document, "/v1/score", "413") == ["Oversized"]
    assert _error_classes(document, "/v1/score", "503") == ["FeaturesUnavailable"]


def test_request_bodies_are_named_components(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    body = document["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/TransactionEvent"}
    batch = schemas["ScoreBatchRequest"]
    assert batch["properties"]["events"]["maxItems"] == MAX_EVENTS
    assert batch["properties"]["events"]["minItems"] == 1
    assert batch["properties"]["events"]["items"] == {
        "$ref": "#/components/schemas/BatchedTransactionEvent"
    }
    assert batch["additionalProperties"] is False
    event = schemas["TransactionEvent"]
    assert event["properties"]["currency"]["enum"] == list(limits.CURRENCIES)
    assert event["properties"]["merchant_country"]["pattern"] == limits.COUNTRY_PATTERN
    assert event["properties"]["transaction_id"]["maxLength"] == limits.MAX_ID_LENGTH
    assert "maxLength" not in json.dumps(schemas["BatchedTransactionEvent"])


def test_with_api_keys_the_scoring_routes_state_them(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("0123456789abcdef0123\n")
    settings = Settings(models_dir=MODELS, redis_url="redis://127.0.0.1:1/0")
    options = ServeOptions(api_keys=read_api_keys(keys))
    document = create_app(build_runtime(settings, options)).openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    for path, operations in document["paths"].items():
        for operation in operations.values():
            secured = path in ("/v1/score", "/v1/score:batch")
            assert ("security" in operation) == secured, path
            assert ("401" in operation["responses"]) == secured, path
