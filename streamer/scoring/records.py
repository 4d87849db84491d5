"""The ScoredEvent records of a batch (schemas/scored_event.avsc), built from plain arrays."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.codec.columns import Column, column_of
from streamer.features.cache import FEATURE_STATUSES
from streamer.model.registry import ModelMetadata
from streamer.scoring.decisions import DECISIONS

_DECISION_NAMES = np.array(DECISIONS, dtype=object)  # codes to names for a whole batch at once
_STATUS_NAMES = np.array(FEATURE_STATUSES, dtype=object)


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


def scored_columns(
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
) -> dict[str, Column]:
    """The ScoredEvents of a batch as columns, in the schema's field order (shadow fields
    null unless a shadow model scored the batch; a NaN shadow score means it failed).

    Columns rather than a dict per event (``codec.columns``): the encoder writes them
    straight to Avro, and ``records_of`` makes the dicts where they are wanted. Of events
    held as ``Records``, the columns copied from them are theirs, shared: read-only.
    """
    columns: dict[str, Column] = {
        "transaction_id": column_of(events, "transaction_id"),
        "card_id": column_of(events, "card_id"),
        "merchant_id": column_of(events, "merchant_id"),
        "amount_minor": column_of(events, "amount_minor"),
        "currency": column_of(events, "currency"),
        "score": scores.tolist(),
        "decision": _DECISION_NAMES[decisions].tolist(),
        "review_threshold": (model.review_threshold,),
        "decline_threshold": (model.decline_threshold,),
        "model_name": (model.name,),
        "model_version": (model.version,),
        "feature_status": _STATUS_NAMES[statuses].tolist(),
        "event_time": column_of(events, "event_time"),
        "received_time": (received_ms,),
        "scored_time": (scored_ms,),
        "publish_time": (publish_ms,),
        "processing_latency_ms": (float(publish_ms - received_ms),),
        "source_partition": list(partitions),
        "source_offset": list(offsets),
        "shadow_score": (None,),
        "shadow_decision": (None,),
        "shadow_model_version": (None,),
        "features": (None,),
        "reasons": (None,),
    }
    if shadow is not None:
        failed = np.isnan(shadow.scores).tolist()  # the shadow did not score these rows
        values, names = shadow.scores.tolist(), _DECISION_NAMES[shadow.decisions].tolist()
        version = shadow.model.version
        columns["shadow_score"] = [None if f else v for f, v in zip(failed, values, strict=True)]
        columns["shadow_decision"] = [None if f else d for f, d in zip(failed, names, strict=True)]
        columns["shadow_model_version"] = [None if f else version for f in failed]
    return columns


@dataclass(frozen=True)
class ShadowResult:
    """A shadow model's scores and decisions for the scored rows (NaN where it failed)."""

    model: ModelStamp
    scores: np.ndarray
    decisions: np.ndarray
    matrix: np.ndarray | None = None  # the shadow's input (None when it failed)
    loaded: Any = None  # the shadow's LoadedModel (its metadata: drift references)
