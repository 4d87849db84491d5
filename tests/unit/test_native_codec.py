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
