"""The ScoredEvent columns of a batch: the schema's fields in its order, shadow fields null
without a shadow, the latency from receipt to publication."""

from __future__ import annotations

import numpy as np

from streamer.codec.schemas import scored_schema
from streamer.scoring.records import ModelStamp, ShadowResult, scored_columns
from streamer.testing import sample_event

MODEL = ModelStamp("fraud-gbt", "3", 0.3, 0.8)


def _columns(shadow: ShadowResult | None = None) -> dict[str, object]:
    events = [sample_event(transaction_id="t0"), sample_event(transaction_id="t1")]
    return scored_columns(
        events,
        scores=np.array([0.1, 0.9]),
        decisions=np.array([0, 2], dtype=np.int8),
        statuses=np.array([0, 0], dtype=np.int8),
        partitions=[0, 1],
        offsets=[10, 11],
        model=MODEL,
        received_ms=1_000,
        scored_ms=1_004,
        publish_ms=1_250,
        shadow=shadow,
    )


def test_columns_are_schema_fields_in_the_schemas_order() -> None:
    fields = [f["name"] for f in scored_schema()["fields"]]
    columns = _columns()
    assert list(columns) == [f for f in fields if f in columns]
    assert {"shadow_score", "shadow_decision", "shadow_model_version"} <= set(columns)


def test_without_a_shadow_every_optional_field_is_null() -> None:
    columns = _columns()
    for name in ("shadow_score", "shadow_decision", "shadow_model_version", "features"):
        assert columns.get(name, (None,)) == (None,), name


def test_latency_is_publication_minus_receipt_and_decisions_are_named() -> None:
    columns = _columns()
    assert columns["processing_latency_ms"] == (250.0,)
    assert (columns["received_time"], columns["scored_time"], columns["publish_time"]) == (
        (1_000,),
        (1_004,),
        (1_250,),
    )
    assert columns["decision"] == ["APPROVE", "DECLINE"]
    assert (columns["review_threshold"], columns["decline_threshold"]) == ((0.3,), (0.8,))
    assert (columns["model_name"], columns["model_version"]) == (("fraud-gbt",), ("3",))
    assert (columns["source_partition"], columns["source_offset"]) == ([0, 1], [10, 11])


def test_a_shadow_fills_its_fields_except_where_it_failed() -> None:
    shadow = ShadowResult(
        ModelStamp("fraud-gbt", "4", 0.3, 0.8),
        scores=np.array([0.5, np.nan]),
        decisions=np.array([1, 1], dtype=np.int8),
    )
    columns = _columns(shadow)
    assert columns["shadow_score"] == [0.5, None]
    assert columns["shadow_decision"] == ["REVIEW", None]
    assert columns["shadow_model_version"] == ["4", None]
