"""ScoredEvent v2 (shadow fields) is backward and forward compatible with v1."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import fastavro

REPO = Path(__file__).resolve().parents[2]
V1 = fastavro.schema.load_schema(REPO / "schemas" / "history" / "scored_event.v1.avsc")
V2 = fastavro.schema.load_schema(REPO / "schemas" / "scored_event.avsc")

RECORD: dict[str, Any] = {
    "transaction_id": "t-1",
    "card_id": "c-1",
    "merchant_id": "m-1",
    "amount_minor": 1234,
    "currency": "EUR",
    "score": 0.7,
    "decision": "REVIEW",
    "review_threshold": 0.5,
    "decline_threshold": 0.9,
    "model_name": "fraud-gbt",
    "model_version": "2",
    "feature_status": "COMPLETE",
    "event_time": 1_764_000_000_000,
    "received_time": 1_764_000_000_010,
    "scored_time": 1_764_000_000_011,
    "publish_time": 1_764_000_000_012,
    "processing_latency_ms": 2.0,
    "source_partition": 0,
    "source_offset": 7,
}


def _round_trip(record: dict[str, Any], writer: Any, reader: Any) -> dict[str, Any]:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, writer, record)
    buf.seek(0)
    out: dict[str, Any] = fastavro.schemaless_reader(buf, writer, reader)  # type: ignore[assignment]
    return out


def test_old_readers_read_new_records() -> None:
    new = {**RECORD, "shadow_score": 0.2, "shadow_decision": "APPROVE", "shadow_model_version": "3"}
    old = _round_trip(new, V2, V1)
    assert set(old) == set(RECORD)
    assert old["score"] == 0.7


def test_new_readers_read_old_records() -> None:
    new = _round_trip(RECORD, V1, V2)
    assert (new["shadow_score"], new["shadow_decision"], new["shadow_model_version"]) == (
        None,
        None,
        None,
    )


V2_FILE = fastavro.schema.load_schema(REPO / "schemas" / "history" / "scored_event.v2.avsc")


def test_version_2_readers_read_records_with_logged_features() -> None:
    new = {**RECORD, "features": {"txn_count_1h": 3.0, "amount": 12.5}}
    old = _round_trip(new, V2, V2_FILE)
    assert "features" not in old
    assert old["source_offset"] == 7


def test_logged_features_round_trip_and_default_to_null() -> None:
    logged = {"txn_count_1h": 3.0, "amount_zscore": -1.25}
    assert _round_trip({**RECORD, "features": logged}, V2, V2)["features"] == logged
    assert _round_trip(RECORD, V2_FILE, V2)["features"] is None


V3_FILE = fastavro.schema.load_schema(REPO / "schemas" / "history" / "scored_event.v3.avsc")
REASONS = [
    {
        "code": "VELOCITY_1H",
        "feature": "txn_count_1h",
        "value": 7.0,
        "contribution": 1.25,
        "text": "7 transactions in the last hour",
    }
]


def test_version_3_readers_read_records_with_reasons() -> None:
    new = {**RECORD, "features": {"amount": 12.5}, "reasons": REASONS}
    old = _round_trip(new, V2, V3_FILE)
    assert "reasons" not in old
    assert old["features"] == {"amount": 12.5}


def test_reasons_round_trip_and_default_to_null() -> None:
    assert _round_trip({**RECORD, "reasons": REASONS}, V2, V2)["reasons"] == REASONS
    assert _round_trip({**RECORD, "reasons": []}, V2, V2)["reasons"] == []
    assert _round_trip(RECORD, V3_FILE, V2)["reasons"] is None
