"""The C codec against the generated Python codec it stands in front of.

The C code answers only plainly valid data and hands the rest to the generated function;
so wherever it answers it must give exactly what the generated function gives (value,
type, field order, bytes), and where it does not, the generated function's answer or
error comes through unchanged. Checked on records drawn from every schema we ship and a
schema holding every Avro type, on fuzzed bytes, and on values of unusual types.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.codec import codegen, native
from streamer.codec import schemas as avro
from tests.fixtures.events import REPO, V3_SCHEMA
from tests.unit.test_codec_differential import RULES_WRITER, mutations, records

SCHEMAS = {
    **{p.name: avro.load_schema(p) for p in sorted((REPO / "schemas").rglob("*.avsc"))},
    "v3_fixture": avro.load_schema(V3_SCHEMA),
    "every_type": avro.parse(RULES_WRITER),
}
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    return avro.without_logical_types(schema)


def _pair(name: str) -> tuple[Any, Any, Any, Any]:
    """(C decoder, generated decoder, C encoder, generated encoder) of a schema."""
    schema = _plain(SCHEMAS[name])
    decode, encode = codegen.reader_for(schema, schema), codegen.encoder_for(schema)
    assert type(decode).__name__ == "Codec", "the C decoder is not in use"
    assert type(encode).__name__ == "Codec", "the C encoder is not in use"
    return decode, decode.fallback, encode, encode.fallback


def _same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _outcome(function: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", function(*args)
    except Exception as exc:  # noqa: BLE001 - the exception's type is the outcome
        return "raised", type(exc)


def test_the_c_codec_is_built_and_serves_the_stream() -> None:
    """`make setup` (pip install -e .) builds the extension; the hot path uses it."""
    assert native.available()
    schema = _plain(avro.transaction_schema())
    assert type(codegen.reader_for(schema, schema)).__name__ == "Codec"
    assert type(codegen.encoder_for(_plain(avro.scored_schema()))).__name__ == "Codec"


@pytest.mark.parametrize("name", SCHEMAS)
@PROPERTY
@given(data=st.data())
def test_valid_records_decode_and_encode_as_the_generated_codec(
    name: str, data: st.DataObject
) -> None:
    c_decode, py_decode, c_encode, py_encode = _pair(name)
    schema = _plain(SCHEMAS[name])
    record = data.draw(records(schema), label="record")
    header = data.draw(st.binary(max_size=10), label="header")
    payload = py_encode(record, header)
    assert c_encode(record, header) == payload
    start = len(header)
    ours, reference = c_decode(payload, start), py_decode(payload, start)
    assert _same(ours, reference)


@pytest.mark.parametrize("name", SCHEMAS)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_bytes_give_what_the_generated_decoder_gives(name: str, data: st.DataObject) -> None:
    c_decode, py_decode, _, py_encode = _pair(name)
    schema = _plain(SCHEMAS[name])
    payload = py_encode(data.draw(records(schema), label="record"), b"")
    fuzzed = data.draw(mutations(payload), label="fuzzed") if payload else b"\x00"
    ours, reference = _outcome(c_decode, fuzzed, 0), _outcome(py_decode, fuzzed, 0)
    assert ours[0] == reference[0]
    assert _same(ours[1], reference[1]) if ours[0] == "ok" else ours[1] is reference[1]


class _Text(str):
    pass


class _Whole(int):
    pass


UNUSUAL = [
    None, True, False, 0, -1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**70, 1.5, -0.0,
    float("nan"), float("inf"), 3.5e38, 1e300, np.float64(0.25), np.float32(0.5), np.int64(7),
    "", "RED", "TEAL", "é", "\ud800", _Text("RED"), _Whole(3), b"", b"\x00\x01\x02\x03",
    bytearray(b"abcd"), [], [1], (), {}, {"a": 1.0}, {"x": 1, "dropped": "RED"}, object(),
]  # fmt: skip


@pytest.mark.parametrize("name", ["every_type", "scored_event.avsc", "transaction_event.avsc"])
@PROPERTY
@given(data=st.data())
def test_unusual_values_encode_or_fail_as_the_generated_encoder(
    name: str, data: st.DataObject
) -> None:
    """Each field in turn gets a value of an unusual type, or goes missing."""
    _, _, c_encode, py_encode = _pair(name)
    schema = _plain(SCHEMAS[name])
    record = data.draw(records(schema), label="record")
    field = data.draw(st.sampled_from(sorted(record)), label="field")
    if data.draw(st.booleans(), label="missing"):
        del record[field]
    else:
        record[field] = data.draw(st.sampled_from(UNUSUAL), label="value")
    ours, reference = _outcome(c_encode, record, b""), _outcome(py_encode, record, b"")
    assert ours == reference


def test_a_record_that_is_not_a_dict_is_left_to_the_generated_encoder() -> None:
    _, _, c_encode, py_encode = _pair("transaction_event.avsc")
    from types import MappingProxyType

    from streamer.testing import sample_event

    event = MappingProxyType(sample_event())
    assert c_encode(event, b"") == py_encode(event, b"")


def test_schema_resolution_stays_with_the_generated_decoder() -> None:
    reader = _plain(avro.transaction_schema())
    for path in sorted((REPO / "schemas" / "history").glob("*.avsc")):
        writer = _plain(avro.load_schema(path))
        if avro.schema_json(writer) != avro.schema_json(reader):
            assert type(codegen.reader_for(writer, reader)).__name__ == "function", path


def test_a_recursive_schema_stays_with_the_generated_codec() -> None:
    schema = _plain(
        avro.parse(
            {
                "type": "record",
                "name": "Node",
                "fields": [
                    {"name": "value", "type": "long"},
                    {"name": "next", "type": ["null", "Node"]},
                ],
            }
        )
    )
    with pytest.raises(native.UnsupportedSchemaError):
        native.spec(schema)
    encode = codegen.encoder_for(schema)
    assert type(encode).__name__ == "function"
    record = {"value": 1, "next": {"value": 2, "next": None}}
    assert codegen.reader_for(schema, schema)(encode(record, b""), 0)[0] == record


def test_a_payload_of_another_type_than_bytes_is_left_to_the_generated_decoder() -> None:
    c_decode, py_decode, _, py_encode = _pair("transaction_event.avsc")
    from streamer.testing import sample_event

    payload = py_encode(sample_event(), b"")
    assert c_decode(bytearray(payload), 0) == py_decode(bytes(payload), 0)
    beyond = len(payload) + 5
    assert _outcome(c_decode, payload, beyond) == _outcome(py_decode, payload, beyond)


def _columns(rows: list[dict[str, Any]], names: tuple[str, ...], shared: set[str]) -> tuple:
    """Columns of ``rows``: a 1-tuple where every row shares the field's value (if asked)."""
    out: list[Any] = []
    for name in names:
        values = [row[name] for row in rows]
        same = bool(values) and all(_same(v, values[0]) for v in values)
        out.append((values[0],) if name in shared and same else values)
    return tuple(out)


@pytest.mark.parametrize("name", ["scored_event.avsc", "transaction_event.avsc", "every_type"])
@PROPERTY
@given(data=st.data())
def test_columns_encode_as_the_generated_encoder_encodes_each_row(
    name: str, data: st.DataObject
) -> None:
    """Rows drawn from the schema, some fields shared by every row, one value sometimes
    unusual: the same bytes per row as the generated encoder, or the same exception."""
    _, _, c_encode, py_encode = _pair(name)
    schema = _plain(SCHEMAS[name])
    names = c_encode.fields
    shared_row = data.draw(records(schema), label="shared")
    rows = data.draw(st.lists(records(schema), max_size=6), label="rows")
    shared = data.draw(st.sets(st.sampled_from(names)), label="shared fields")
    rows = [{**row, **{k: shared_row[k] for k in shared}} for row in rows]
    if rows and data.draw(st.booleans(), label="unusual"):
        at = data.draw(st.integers(0, len(rows) - 1), label="row")
        field = data.draw(st.sampled_from(names), label="field")
        rows[at][field] = data.draw(st.sampled_from(UNUSUAL), label="value")
    header = data.draw(st.binary(max_size=5), label="header")
    columns = _columns(rows, names, shared)
    ours = _outcome(c_encode.encode_columns, columns, len(rows), header)
    reference = _outcome(lambda: [py_encode(row, header) for row in rows])
    assert ours == reference


@pytest.mark.parametrize("name", ["scored_event.avsc", "every_type"])
@settings(PROPERTY, max_examples=100)
@given(data=st.data())
def test_a_value_shared_by_every_row_encodes_as_it_does_in_each_row(
    name: str, data: st.DataObject
) -> None:
    """A 1-tuple column is encoded once for all rows: with runs of such columns, and one
    of them sometimes a value the C code leaves to the generated encoder (then every row
    goes there), the bytes of each row or the exception are the generated encoder's."""
    _, _, c_encode, py_encode = _pair(name)
    names = c_encode.fields
    base = data.draw(records(_plain(SCHEMAS[name])), label="shared")
    rows = data.draw(st.lists(records(_plain(SCHEMAS[name])), min_size=2, max_size=5))
    shared = data.draw(st.sets(st.sampled_from(names), min_size=1), label="shared fields")
    if data.draw(st.booleans(), label="unusual"):
        base[data.draw(st.sampled_from(sorted(shared)))] = data.draw(st.sampled_from(UNUSUAL))
    rows = [{**row, **{k: base[k] for k in shared}} for row in rows]
    columns = tuple((base[k],) if k in shared else [r[k] for r in rows] for k in names)
    ours = _outcome(c_encode.encode_columns, columns, len(rows), b"\xc3\x01")
    reference = _outcome(lambda: [py_encode(row, b"\xc3\x01") for row in rows])
    assert ours == reference


def test_columns_of_the_wrong_shape_are_refused() -> None:
    _, _, c_encode, _ = _pair("scored_event.avsc")
    width = len(c_encode.fields)
    with pytest.raises(ValueError, match="neither a list"):
        c_encode.encode_columns(((1, 2),) * width, 1, b"")
    with pytest.raises(ValueError, match="neither a list"):
        c_encode.encode_columns(([1],) * width, 2, b"")
    with pytest.raises(TypeError):
        c_encode.encode_columns(((1,),) * (width - 1), 1, b"")


def test_the_encoder_takes_columns_with_or_without_the_c_codec() -> None:
    """``Encoder.encode_columns`` gives what ``encode_many`` gives for the same records,
    through the C codec and through the generated one (a registry's newer schema)."""
    from streamer.codec import wire
    from streamer.codec.columns import records_of

    encoder = wire.make_encoder("single-object", schema=avro.scored_schema())
    columns = {
        "transaction_id": ["t1", "t2"], "card_id": ["c1", "c2"], "merchant_id": ["m", "m"],
        "amount_minor": [100, 250], "currency": ("EUR",), "score": [0.25, 0.75],
        "decision": ["APPROVE", "REVIEW"], "review_threshold": (0.5,),
        "decline_threshold": (0.9,), "model_name": ("fraud-gbt",), "model_version": ("2",),
        "feature_status": ["COMPLETE", "PARTIAL"], "event_time": [1, 2],
        "received_time": (3,), "scored_time": (4,), "publish_time": (5,),
        "processing_latency_ms": (2.0,), "source_partition": [0, 1], "source_offset": [7, 8],
        "shadow_score": (None,), "shadow_decision": (None,), "shadow_model_version": (None,),
    }  # fmt: skip
    expected = encoder.encode_many(records_of(columns, 2))
    assert encoder.encode_columns(columns, 2) == expected
    encoder._encode = encoder._encode.fallback  # the generated encoder alone
    assert encoder.encode_columns(columns, 2) == expected
