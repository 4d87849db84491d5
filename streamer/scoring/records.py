"""The ScoredEvent records of a batch (schemas/scored_event.avsc), built from plain arrays."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.features.cache import FEATURE_STATUSES
from streamer.model.registry import ModelMetadata
from streamer.scoring.decisions import DECISIONS


@dataclass(frozen=True)
class ModelStamp:
    """What every scored event says about the model that scored it."""

    name: str
    version: str
    review_threshold: float
    decline_threshold: float

    @classmethod
    def of(cls, metadata: ModelMetadata) -> ModelStamp:
        """The stamp of a model, from its metadata (the one place a stamp is built)."""
        thresholds = metadata.thresholds
        return cls(metadata.name, metadata.version, thresholds.review, thresholds.decline)


def scored_records(
    events: Sequence[Mapping[str, Any]],
    *,
    scores: np.ndarray,
    decisions: np.ndarray,
    statuses: np.ndarray,
    partitions: Sequence[int],
    offsets: Sequence[int],
    model: ModelStamp,
    received_ms: int,
    scored_ms: int,
    publish_ms: int,
    shadow: ShadowResult | None = None,
) -> list[dict[str, Any]]:
    """One ScoredEvent dict per input event, in input order (shadow fields null unless
    a shadow model scored the batch; a NaN shadow score means the shadow failed)."""
    latency = float(publish_ms - received_ms)
    records = [
        {
            "transaction_id": event["transaction_id"],
            "card_id": event["card_id"],
            "merchant_id": event["merchant_id"],
            "amount_minor": event["amount_minor"],
            "currency": event["currency"],
            "score": score,
            "decision": DECISIONS[decision],
            "review_threshold": model.review_threshold,
            "decline_threshold": model.decline_threshold,
            "model_name": model.name,
            "model_version": model.version,
            "feature_status": FEATURE_STATUSES[status],
            "event_time": event["event_time"],
            "received_time": received_ms,
            "scored_time": scored_ms,
            "publish_time": publish_ms,
            "processing_latency_ms": latency,
            "source_partition": partition,
            "source_offset": offset,
            "shadow_score": None,
            "shadow_decision": None,
            "shadow_model_version": None,
        }
        for event, score, decision, status, partition, offset in zip(
            events,
            scores.tolist(),
            decisions.tolist(),
            statuses.tolist(),
            partitions,
            offsets,
            strict=True,
        )
    ]
    if shadow is not None:
        version = shadow.model.version
        for record, score, decision in zip(
            records, shadow.scores.tolist(), shadow.decisions.tolist(), strict=True
        ):
            if not math.isnan(score):  # the shadow scored this row
                record["shadow_score"] = score
                record["shadow_decision"] = DECISIONS[decision]
                record["shadow_model_version"] = version
    return records


@dataclass(frozen=True)
class ShadowResult:
    """A shadow model's scores and decisions for the scored rows (NaN where it failed)."""

    model: ModelStamp
    scores: np.ndarray
    decisions: np.ndarray
    matrix: np.ndarray | None = None  # the shadow's input (None when it failed)
    loaded: Any = None  # the shadow's LoadedModel (its metadata: drift references)
