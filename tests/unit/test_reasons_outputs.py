"""Reasons survive every output a person reads: the scored topic's Avro as ``streamer
consume`` prints it (v4 and older writers), Parquet from ``score-file``, the API's model."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from streamer.backfill.parquet import ParquetWriter
from streamer.cli.consume import WriterSchemaDecoder
from streamer.codec.schemas import load_schema, scored_schema
from streamer.codec.wire import make_encoder
from streamer.model.registry import LoadedModel, load_model
from streamer.scoring.kernel import ScoringKernel
from streamer.scoring.reasons import ReasonSettings
from streamer.serve.bodies import ScoreResponse
from streamer.testing import InMemoryFeatures, sample_event

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    """Scored events of fraud-gbt@2, half of them large foreign payments (flagged)."""
    model: LoadedModel = load_model("fraud-gbt@2", MODELS)
    cards = {f"card-{i}": {"home_country": "DE", "amount_mean_30d": 40.0} for i in range(6)}
    kernel = ScoringKernel(model, InMemoryFeatures(model, cards=cards), reasons=ReasonSettings())
    events = [
        sample_event(
            transaction_id=f"t-{i}",
            card_id=f"card-{i}",
            amount_minor=900_000 if i % 2 else 1_500,
            merchant_country="NG" if i % 2 else "DE",
            channel="ECOMMERCE" if i % 2 else "POS",
            card_present=not i % 2,
        )
        for i in range(6)
    ]
    scored = kernel.score(events, [(0, i) for i in range(6)], received_ms=1_764_000_100_000)
    out = scored.records
    assert any(r["reasons"] for r in out)
    assert any(r["reasons"] is None for r in out)
    return out


def test_consume_prints_each_scored_events_reasons(records: list[dict[str, Any]]) -> None:
    encoder = make_encoder("single-object", schema=scored_schema())
    decoder = WriterSchemaDecoder(1_000_000)
    for record in records:
        decoded = decoder.decode(encoder.encode(record))
        assert isinstance(decoded, dict)
        line = orjson.loads(orjson.dumps(decoded))
        assert line["reasons"] == record["reasons"]


def test_consume_reads_a_version_3_writers_records_without_reasons(
    records: list[dict[str, Any]],
) -> None:
    old = load_schema("history/scored_event.v3")
    encoder = make_encoder("single-object", schema=old)
    record = {k: v for k, v in records[1].items() if k != "reasons"}
    decoded = WriterSchemaDecoder(1_000_000).decode(encoder.encode(record))
    assert isinstance(decoded, dict)
    assert "reasons" not in decoded
    assert decoded["transaction_id"] == record["transaction_id"]


def test_parquet_keeps_reasons_and_their_absence(records: list[dict[str, Any]]) -> None:
    buffer = io.BytesIO()
    writer = ParquetWriter(buffer, scored_schema())
    writer.write(records)
    writer.close()
    back = pq.read_table(io.BytesIO(buffer.getvalue())).to_pylist()
    assert [r["reasons"] for r in back] == [r["reasons"] for r in records]


def test_the_api_response_model_describes_the_answer(records: list[dict[str, Any]]) -> None:
    for record in records:
        body = ScoreResponse.model_validate({"request_id": "r", **record})
        reasons = [reason.model_dump() for reason in body.reasons or []]
        assert reasons == (record["reasons"] or [])
