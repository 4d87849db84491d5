"""The generated codecs beyond our schemas: caching, recursion, resolution refusals, and the
errors an encoder gives for records that do not fit."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from streamer.codec import codegen, wire
from streamer.codec import schemas as avro
from streamer.errors import Rejection


def record(name: str, *fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "t", "fields": list(fields)}


def body(schema: dict[str, Any], value: dict[str, Any]) -> bytes:
    out = BytesIO()
    schemaless_writer(out, parse_schema(schema), value)
    return out.getvalue()


def test_one_compiled_function_per_schema_pair() -> None:
    reader = avro.without_logical_types(avro.transaction_schema())
    again = avro.without_logical_types(avro.parse(avro.schema_json(avro.transaction_schema())))
    assert codegen.reader_for(reader, reader) is codegen.reader_for(again, again)
    scored = avro.without_logical_types(avro.scored_schema())
    assert codegen.encoder_for(scored) is codegen.encoder_for(scored)
    assert "def " in codegen.source_of(codegen.reader_for(reader, reader))


LIST = record(
    "Node",
    {"name": "value", "type": "long"},
    {"name": "next", "type": ["null", "t.Node"]},
)


def test_recursive_schemas_round_trip_like_fastavro() -> None:
    value = {"value": 1, "next": {"value": -2, "next": {"value": 3, "next": None}}}
    payload = wire.make_encoder("raw", schema=avro.parse(LIST)).encode(value)
    assert payload == body(LIST, value)
    assert wire.make_decoder("raw", reader_schema=avro.parse(LIST)).decode(payload) == value


def _decode(writer: dict[str, Any], reader: dict[str, Any], payload: bytes) -> Any:
    dec = wire.make_decoder(
        "raw", reader_schema=avro.parse(reader), writer_schema=avro.parse(writer)
    )
    return dec.decode(payload)


WRITER = record("R", {"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}})
READER_X_ONLY = record("R", {"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X"]}})


def test_an_unknown_enum_symbol_is_refused_only_when_it_occurs() -> None:
    assert _decode(WRITER, READER_X_ONLY, b"\x00") == {"a": "X"}
    refused = _decode(WRITER, READER_X_ONLY, b"\x02")
    assert isinstance(refused, Rejection)
    assert refused.error_class == "IncompatibleSchema"
    assert schemaless_reader(BytesIO(b"\x00"), parse_schema(WRITER), parse_schema(READER_X_ONLY))


@pytest.mark.parametrize(
    ("reader", "payload"),
    [
        (record("R", {"name": "a", "type": "E"}, {"name": "b", "type": "int"}), b"\x00"),
        (record("Other", {"name": "a", "type": "string"}), b"\x00"),
        (record("R", {"name": "a", "type": "string"}), b"\x00"),
    ],
    ids=["reader field without default", "other record name", "enum read as string"],
)
def test_pairs_that_cannot_resolve_reject_every_datum(
    reader: dict[str, Any], payload: bytes
) -> None:
    writer = record("R", {"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X"]}})
    if reader["fields"][0]["type"] == "E":
        reader["fields"][0]["type"] = writer["fields"][0]["type"]
    for data in (payload, b"\x00\x00", b"\x02"):
        refused = _decode(writer, reader, data)
        assert isinstance(refused, Rejection)
        assert refused.error_class == "IncompatibleSchema"


def test_a_length_varint_longer_than_ten_bytes_is_not_avro() -> None:
    schema = record("S", {"name": "s", "type": "string"})
    refused = _decode(schema, schema, b"\x80" * 10 + b"\x00")
    assert isinstance(refused, Rejection)
    assert refused.error_class == "NotAvro"


SCORED = avro.scored_schema()
GOOD: dict[str, Any] = {
    **{"transaction_id": "t", "card_id": "c", "merchant_id": "m", "amount_minor": 1},
    **{"currency": "EUR", "score": 0.5, "decision": "REVIEW", "review_threshold": 0.5},
    **{"decline_threshold": 0.9, "model_name": "fraud-gbt", "model_version": "1"},
    **{"feature_status": "COMPLETE", "event_time": 1, "received_time": 2, "scored_time": 3},
    **{"publish_time": 4, "processing_latency_ms": 2.0, "source_partition": 0},
    **{"source_offset": 7},
}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"card_id": 5}, TypeError),
        ({"score": "high"}, TypeError),
        ({"amount_minor": 2**63}, ValueError),
        ({"amount_minor": -(2**63) - 1}, ValueError),
        ({"source_partition": 2**31}, ValueError),
        ({"amount_minor": 1.5}, TypeError),
        ({"decision": "MAYBE"}, ValueError),
        ({"transaction_id": None}, TypeError),
    ],
    ids=str,
)
def test_records_that_do_not_fit_raise_type_or_value_error(
    change: dict[str, Any], error: type[Exception]
) -> None:
    encoder = wire.make_encoder("raw", schema=SCORED)
    assert encoder.encode(GOOD) == body(avro.without_logical_types(SCORED), GOOD)
    with pytest.raises(error):
        encoder.encode(GOOD | change)


def test_a_missing_field_names_the_field() -> None:
    record_without = {k: v for k, v in GOOD.items() if k != "model_name"}
    with pytest.raises(ValueError, match="model_name"):
        wire.make_encoder("raw", schema=SCORED).encode(record_without)


def test_union_value_fitting_no_branch_is_a_type_error() -> None:
    schema = avro.parse(record("U", {"name": "u", "type": ["null", "long", "string"]}))
    encoder = wire.make_encoder("raw", schema=schema)
    assert encoder.encode({"u": "x"}) == body(schema, {"u": "x"})
    with pytest.raises(TypeError, match="union"):
        encoder.encode({"u": 1.5})
