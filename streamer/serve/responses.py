"""Response bodies: a scored answer, or an error shaped like a dead letter's headers.

A rejected event gets the ``error_class``, ``message`` and ``stage`` the stream would have
put on its dead letter, so one runbook and one dashboard cover both paths. Malformed JSON
is ``InvalidJson`` and a wrong field type ``InvalidEvent`` (stage ``decode``, the JSON
counterparts of ``NotAvro`` / ``Truncated``); their messages name the field, never its value.
The OpenAPI document describes these bodies with the models of ``serve.bodies``.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response

from streamer.errors import Rejection
from streamer.serve.batching import Outcome

_HIDDEN = ("source_partition", "source_offset", "publish_time")
MAX_MESSAGE = 500
DEGRADED_REFUSED = Rejection(
    "FeaturesUnavailable",
    "the feature cache (Redis) is unreachable and STREAMER_REDIS_REQUIRED is true; "
    "retry, or set STREAMER_REDIS_REQUIRED=false to score with defaults (DEGRADED)",
    "enrich",
)


def json(body: Any, status: int = 200, request_id: str | None = None) -> Response:
    headers = {"x-request-id": request_id} if request_id else None
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def scored_body(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _HIDDEN}


def rejection_body(rejection: Rejection) -> dict[str, Any]:
    return {
        "error_class": rejection.error_class,
        "message": rejection.message,
        "stage": rejection.stage,
    }


def rejection_status(rejection: Rejection) -> int:
    """422 for the event's own fault (decode, validate); 500 when scoring it failed."""
    return 422 if rejection.stage in ("decode", "validate") else 500


def outcome_response(outcome: Outcome, request_id: str, *, redis_required: bool) -> Response:
    """The answer to ``/v1/score`` for one event's outcome."""
    if isinstance(outcome, Rejection):
        body = {**rejection_body(outcome), "request_id": request_id}
        return json(body, rejection_status(outcome), request_id)
    if redis_required and outcome["feature_status"] == "DEGRADED":
        return json({**rejection_body(DEGRADED_REFUSED), "request_id": request_id}, 503, request_id)
    return json({"request_id": request_id, **scored_body(outcome)}, 200, request_id)


def invalid_request(exc: ValidationError, request_id: str) -> Response:
    """422 for a body that is not JSON or not a TransactionEvent."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    malformed = any(e["type"] == "json_invalid" for e in errors)
    parts = [f"{_location(e['loc'])}: {e['msg']}" for e in errors[:5]]
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    message = "; ".join(parts)[:MAX_MESSAGE]
    body = {
        "error_class": "InvalidJson" if malformed else "InvalidEvent",
        "message": message,
        "stage": "decode",
        "request_id": request_id,
    }
    return json(body, 422, request_id)


def _location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"
