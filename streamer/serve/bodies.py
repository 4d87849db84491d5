"""The response bodies as the OpenAPI document states them, error classes included.

The routes write their bodies with ``serve.responses`` (orjson, no model on the hot path);
these models only document them, and the API fuzzer (tests/integration/
test_openapi_contract.py) checks every answer against them. The error bodies name the
classes a status can carry, read from ``scoring.limits`` for the validation rules.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model

from streamer.scoring.decisions import DECISIONS
from streamer.scoring.limits import VALIDATION_CLASSES

Decision = Literal[DECISIONS]  # type: ignore[valid-type]
FeatureStatus = Literal["COMPLETE", "PARTIAL", "DEFAULTED", "DEGRADED"]
DECODE_CLASSES = ("InvalidJson", "InvalidEvent")
"""A body that is not JSON, or JSON that is not the request schema (stage ``decode``)."""


class Reason(BaseModel):
    """One reason code of a flagged decision (docs/reasons.md)."""

    code: str = Field(examples=["VELOCITY_1H"])
    feature: str = Field(description="The model input of this code that contributed most.")
    value: float = Field(description="That input's value in the scored event.")
    contribution: float = Field(description="The code's contribution to the margin (log-odds).")
    text: str = Field(examples=["7 transactions in the last hour"])


class Scored(BaseModel):
    """A scored event: the ScoredEvent record the stream publishes, without its topic
    position (``source_partition``, ``source_offset``) and ``publish_time``."""

    transaction_id: str
    card_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    score: float
    decision: Decision
    review_threshold: float
    decline_threshold: float
    model_name: str
    model_version: str
    feature_status: FeatureStatus
    event_time: int = Field(description="Epoch milliseconds, as the request's event_time.")
    received_time: int
    scored_time: int
    processing_latency_ms: float
    shadow_score: float | None = None
    shadow_decision: Decision | None = None
    shadow_model_version: str | None = None
    reasons: list[Reason] | None = Field(
        None,
        description="Up to three reasons, largest first, for REVIEW and DECLINE (null for "
        "APPROVE, and when STREAMER_REASONS is off or the model has no explainer).",
    )


class ScoreResponse(Scored):
    """The answer to ``/v1/score``: the scored event and the request id."""

    request_id: str


class ScoredResult(Scored):
    """One event of a batch, scored."""

    status: Literal["scored"]


class RejectedResult(BaseModel):
    """One event of a batch, rejected: ``validate`` with one of the validation classes the
    event schema's descriptions name, or ``enrich``/``score`` with the class of the error
    that scoring this event alone raised."""

    status: Literal["rejected"]
    error_class: str = Field(examples=list(VALIDATION_CLASSES))
    message: str
    stage: Literal["validate", "enrich", "score"]


class BatchResponse(BaseModel):
    """One result per event of the batch, in the request's order."""

    request_id: str
    results: list[Annotated[ScoredResult | RejectedResult, Field(discriminator="status")]]


def error_body(name: str, classes: tuple[str, ...] | None, stages: tuple[str, ...]) -> Any:
    """An error body model whose ``error_class`` is one of ``classes`` (any text if None)."""
    kind: Any = Literal[classes] if classes else str
    stage: Any = Literal[stages]
    model: type[BaseModel] = create_model(
        name,
        __doc__="Why the request or its event was not scored (a dead letter's headers).",
        error_class=(kind, ...),
        message=(str, Field(description="For people; names the field, never its value.")),
        stage=(stage, ...),
        request_id=(str | None, None),
    )
    return model


InvalidEvent = error_body(
    "InvalidEventError", (*DECODE_CLASSES, *VALIDATION_CLASSES), ("decode", "validate")
)
InvalidBatch = error_body("InvalidBatchError", DECODE_CLASSES, ("decode",))
Oversized = error_body("OversizedError", ("Oversized",), ("decode",))
Unauthorized = error_body("UnauthorizedError", ("Unauthorized",), ("",))
Unavailable = error_body("UnavailableError", ("FeaturesUnavailable",), ("enrich",))
ScoringFailed = error_body("ScoringFailedError", None, ("enrich", "score"))


class Health(BaseModel):
    """``/healthz``: ok while the batcher runs (200), else fail (503)."""

    status: Literal["ok", "fail"]


class Readiness(Health):
    """``/readyz``: each check, and ok (200) when the model is loaded, the worker runs and
    Redis answers (or is allowed to be down: STREAMER_REDIS_REQUIRED=false); else 503."""

    model: Literal["loaded", "missing"]
    worker: Literal["running", "stopped"]
    redis: Literal["ok", "degraded"]
    breaker: str = Field(description="The feature cache's circuit breaker state.")


class ServingModel(BaseModel):
    spec: str
    name: str
    version: str
    sha256: str
    review_threshold: float
    decline_threshold: float
    features: list[str]


class RegistryEntry(BaseModel):
    name: str
    version: str
    aliases: list[str]
    usable: bool


class Models(BaseModel):
    """The model serving now, its shadow and refused versions, and its registry entries."""

    serving: ServingModel
    shadow: str | None
    refused: str | None
    registry: list[RegistryEntry]
