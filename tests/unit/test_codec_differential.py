"""The generated codecs against fastavro, the reference: same records, same bytes.

Valid input: records drawn from each writer schema (every ``.avsc`` under ``schemas/``,
history included, the v3 fixture, and a pair built to exercise every resolution rule),
written by fastavro and read by both. Fuzzed input: those payloads mutated, cut, extended
or replaced by random bytes. Wherever fastavro reads the bytes cleanly and they are a
strictly valid datum, both must give the same record; wherever we reject, the class must
be the one the bytes deserve (``diagnose`` names it; fastavro's silence does not count).
"""

from __future__ import annotations

import math
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streamer.codec import schemas as avro
from streamer.codec import wire
from streamer.codec.diagnose import diagnose
from streamer.errors import Rejection
from tests.fixtures.events import REPO, V3_SCHEMA

READER = avro.transaction_schema()
WRITERS = [*sorted((REPO / "schemas").rglob("transaction_event*.avsc")), V3_SCHEMA]
SCORED = REPO / "schemas" / "scored_event.avsc"

_NAMESPACE = {"namespace": "test.resolution"}
RULES_WRITER: dict[str, Any] = {
    "type": "record",
    "name": "Rules",
    **_NAMESPACE,
    "fields": [
        {"name": "i2l", "type": "int"},
        {"name": "i2f", "type": "int"},
        {"name": "i2d", "type": "int"},
        {"name": "l2f", "type": "long"},
        {"name": "l2d", "type": "long"},
        {"name": "f2d", "type": "float"},
        {"name": "s2b", "type": "string"},
        {"name": "b2s", "type": {"type": "bytes"}},
        {"name": "old_name", "type": "string"},
        {"name": "plain_to_union", "type": "long"},
        {"name": "union_reordered", "type": ["null", "string", "int"]},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "TEAL"]}},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
        {"name": "tags", "type": {"type": "map", "values": ["null", "double"]}},
        {"name": "points", "type": {"type": "array", "items": {
            "type": "record", "name": "Point", "fields": [
                {"name": "x", "type": "int"}, {"name": "dropped", "type": "Color"}]}}},
        {"name": "writer_only", "type": {"type": "array", "items": "Point"}},
        {"name": "nothing", "type": "null"},
    ],
}  # fmt: skip
RULES_READER: dict[str, Any] = {
    "type": "record",
    "name": "Rules",
    **_NAMESPACE,
    "fields": [
        {"name": "i2l", "type": "long"},
        {"name": "i2f", "type": "float"},
        {"name": "i2d", "type": "double"},
        {"name": "l2f", "type": "float"},
        {"name": "l2d", "type": "double"},
        {"name": "f2d", "type": "double"},
        {"name": "s2b", "type": "bytes"},
        {"name": "b2s", "type": "string"},
        {"name": "new_name", "type": "string", "aliases": ["old_name"]},
        {"name": "plain_to_union", "type": ["null", "string", "double"]},
        {"name": "union_reordered", "type": ["int", "string", "null"]},
        {"name": "color", "type": {"type": "enum", "name": "Color",
                                   "symbols": ["BLUE", "RED"], "default": "BLUE"}},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
        {"name": "tags", "type": {"type": "map", "values": ["null", "double"]}},
        {"name": "points", "type": {"type": "array", "items": {
            "type": "record", "name": "Point", "fields": [
                {"name": "x", "type": "long"},
                {"name": "y", "type": "int", "default": -1}]}}},
        {"name": "nothing", "type": "null"},
        {"name": "added_list", "type": {"type": "array", "items": "int"}, "default": [1, 2]},
        {"name": "added_record", "type": {"type": "record", "name": "Added", "fields": [
            {"name": "a", "type": "string"}]}, "default": {"a": "x"}},
        {"name": "added_union", "type": ["null", "long"], "default": None},
        {"name": "added_enum", "type": "Color", "default": "RED"},
    ],
}  # fmt: skip


def records(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values of ``schema`` (a fastavro-parsed schema), as fastavro writes them."""
    named = named if named is not None else schema.get("__named_schemas", {})
    if isinstance(schema, list):
        return st.one_of([records(branch, named) for branch in schema])
    if isinstance(schema, str):
        return _PRIMITIVES[schema] if schema in _PRIMITIVES else records(named[schema], named)
    kind = schema["type"]
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array":
        return st.lists(records(schema["items"], named), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), records(schema["values"], named), max_size=4)
    return st.fixed_dictionaries({f["name"]: records(f["type"], named) for f in schema["fields"]})


_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "string": st.text(max_size=30),
    "bytes": st.binary(max_size=30),
}


class Pair:
    """A writer schema, our reader schema, our decoder for the pair, fastavro's reading."""

    def __init__(self, writer: dict[str, Any], reader: dict[str, Any]) -> None:
        self.writer = avro.without_logical_types(avro.parse(writer))
        self.reader = avro.without_logical_types(avro.parse(reader))
        self.decoder = wire.make_decoder(
            "raw", reader_schema=avro.parse(reader), writer_schema=avro.parse(writer)
        )

    def write(self, record: dict[str, Any]) -> bytes:
        out = BytesIO()
        schemaless_writer(out, self.writer, record)
        return out.getvalue()

    def fastavro(self, payload: bytes) -> tuple[Any, int] | None:
        """fastavro's record and how many bytes it read, or None when it raised."""
        fo = BytesIO(payload)
        try:
            return schemaless_reader(fo, self.writer, self.reader), fo.tell()
        except Exception:  # noqa: BLE001 - any failure is "fastavro did not read it"
            return None


def _load(path: Path) -> dict[str, Any]:
    return avro.load_schema(path)


PAIRS = {
    **{path.name: Pair(_load(path), READER) for path in WRITERS},
    "scored_event": Pair(_load(SCORED), _load(SCORED)),
    "resolution_rules": Pair(RULES_WRITER, RULES_READER),
}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", PAIRS)
@PROPERTY
@given(data=st.data())
def test_valid_records_decode_as_fastavro_decodes_them(name: str, data: st.DataObject) -> None:
    pair = PAIRS[name]
    record = data.draw(records(pair.writer), label="record")
    if "b2s" in record:  # bytes read as a string: valid only when they are UTF-8
        record["b2s"] = data.draw(st.text(max_size=30), label="b2s").encode()
    payload = pair.write(record)
    expected = pair.fastavro(payload)
    assert expected is not None
    assert expected[1] == len(payload)
    decoded = pair.decoder.decode(payload)
    assert decoded == expected[0]
    assert isinstance(decoded, dict)
    assert list(decoded) == list(expected[0])  # same field order, too
    for key, value in decoded.items():
        assert type(value) is type(expected[0][key]), key


@pytest.mark.parametrize("path", [*WRITERS, SCORED], ids=lambda p: p.name)
@PROPERTY
@given(data=st.data())
def test_encoder_writes_the_bytes_fastavro_writes(path: Path, data: st.DataObject) -> None:
    schema = avro.without_logical_types(_load(path))
    record = data.draw(records(schema), label="record")
    expected = BytesIO()
    schemaless_writer(expected, schema, record)
    assert wire.make_encoder("raw", schema=_load(path)).encode(record) == expected.getvalue()


def mutations(payload: bytes) -> st.SearchStrategy[bytes]:
    """Bit flips, overwritten bytes, cuts, insertions, and bytes with nothing to do with it."""
    size = len(payload)
    flips = st.lists(st.integers(0, size * 8 - 1), min_size=1, max_size=4).map(
        lambda bits: _flip(payload, bits)
    )
    writes = st.tuples(st.integers(0, size - 1), st.binary(min_size=1, max_size=11)).map(
        lambda at: payload[: at[0]] + at[1] + payload[at[0] + len(at[1]) :]
    )
    inserts = st.tuples(st.integers(0, size), st.binary(min_size=1, max_size=11)).map(
        lambda at: payload[: at[0]] + at[1] + payload[at[0] :]
    )
    cuts = st.integers(0, size - 1).map(lambda n: payload[:n])
    return st.one_of(flips, writes, inserts, cuts, st.binary(max_size=2 * size + 8))


def _nan_safe(value: Any) -> Any:
    """The value with each NaN replaced by a marker: flipped bits make NaNs, and NaN != NaN."""
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    if isinstance(value, dict):
        return {key: _nan_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_safe(item) for item in value]
    return value


def _flip(payload: bytes, bits: list[int]) -> bytes:
    out = bytearray(payload)
    for bit in bits:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("name", PAIRS)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_bytes_decode_as_fastavro_or_are_rightly_rejected(
    name: str, data: st.DataObject
) -> None:
    pair = PAIRS[name]
    payload = pair.write(data.draw(records(pair.writer), label="record"))
    fuzzed = data.draw(mutations(payload), label="fuzzed")
    ours = pair.decoder.decode(fuzzed)
    reference = pair.fastavro(fuzzed)
    problem = diagnose(pair.writer, fuzzed) if fuzzed else ("EmptyMessage", "")
    strictly_valid = problem is None and reference is not None and reference[1] == len(fuzzed)
    event("valid" if strictly_valid else f"rejected {problem and problem[0]}")
    if strictly_valid:
        assert reference is not None
        assert _nan_safe(ours) == _nan_safe(reference[0])
        return
    assert isinstance(ours, Rejection), f"accepted what is not a valid datum: {problem}"
    if problem is not None:
        assert ours.error_class == problem[0], (ours, problem)
    elif reference is not None and reference[1] < len(fuzzed):
        assert ours.error_class == "TrailingBytes"
    else:  # a valid writer datum that the reader cannot take (bytes not UTF-8 for a string)
        assert reference is None
        assert ours.error_class in {"IncompatibleSchema", "NotAvro"}, ours


STRICT_CASES = {
    # schema, bytes fastavro reads without complaint, the class we give
    "long varint of 11 bytes": ("long", b"\xff" * 10 + b"\x01", "NotAvro"),
    "long varint beyond 64 bits": ("long", b"\xff" * 9 + b"\x7f", "NotAvro"),
    "int varint of 6 bytes": ("int", b"\x80" * 5 + b"\x00", "NotAvro"),
    "int beyond 32 bits": ("int", b"\xff\xff\xff\xff\x7f", "NotAvro"),
    "boolean byte 2": ("boolean", b"\x02", "NotAvro"),
    "negative enum index": ({"type": "enum", "name": "E", "symbols": ["A"]}, b"\x01", "NotAvro"),
    "negative union index": (["null", "int"], b"\x01\x02", "NotAvro"),
    "trailing byte": ("int", b"\x02\x00", "TrailingBytes"),
    # a block with its size in bytes (count -1) whose item takes 2 bytes, not the size's 1:
    # fastavro reads the item, and skips the block by its size where its reader lacks it
    "array block size short of its items": (
        {"type": "array", "items": "string"}, b"\x01\x02\x02\x30\x00", "NotAvro"),
    "array block size beyond its items": (
        {"type": "array", "items": "string"}, b"\x01\x06\x02\x30\x00", "NotAvro"),
    "map block size short of its items": (
        {"type": "map", "values": "int"}, b"\x01\x02\x02\x6b\x02\x00", "NotAvro"),
}  # fmt: skip


def test_a_block_with_its_true_size_in_bytes_decodes_as_fastavro_decodes_it() -> None:
    # the same blocks as above with the size their items take: Avro that any reader reads
    for field_type, body in (
        ({"type": "array", "items": "string"}, b"\x01\x04\x02\x30\x00"),
        ({"type": "map", "values": "int"}, b"\x01\x06\x02\x6b\x02\x00"),
    ):
        schema = {"type": "record", "name": "One", "fields": [{"name": "f", "type": field_type}]}
        expected = schemaless_reader(BytesIO(body), parse_schema(schema), None)
        decoded = wire.make_decoder("raw", reader_schema=avro.parse(schema)).decode(body)
        assert decoded == expected


@pytest.mark.parametrize("case", STRICT_CASES)
def test_what_fastavro_accepts_silently_is_rejected(case: str) -> None:
    field_type, body, error_class = STRICT_CASES[case]
    schema = {"type": "record", "name": "One", "fields": [{"name": "f", "type": field_type}]}
    fo = BytesIO(body)
    schemaless_reader(fo, parse_schema(schema), None)  # fastavro: no error
    decoded = wire.make_decoder("raw", reader_schema=avro.parse(schema)).decode(body)
    assert isinstance(decoded, Rejection)
    assert decoded.error_class == error_class
    assert "One.f" in decoded.message or error_class == "TrailingBytes"


def test_invalid_utf8_in_a_skipped_writer_field_is_rejected() -> None:
    # fastavro skips a field the reader does not know without decoding it; we check it.
    pair = PAIRS[V3_SCHEMA.name]
    payload = pair.write({**_V3_MINIMAL, "labels": ["ok"]})
    bad = payload.replace(b"\x04ok", b"\x04\xc3\x28")
    assert pair.fastavro(bad) is not None
    decoded = pair.decoder.decode(bad)
    assert isinstance(decoded, Rejection)
    assert decoded.error_class == "NotAvro"
    assert "labels" in decoded.message


_V3_MINIMAL: dict[str, Any] = {
    **{"transaction_id": "t", "card_id": "c", "merchant_id": "m", "event_time": 1},
    **{"amount_minor": 5, "currency": "EUR", "mcc": 5411, "merchant_country": "DE"},
    **{"channel": "POS", "wallet_type": None, "entry_mode": "CHIP", "card_present": True},
    **{"three_ds": None, "terminal_id": None, "acquirer_id": None, "device_id": None},
    **{"ip_address": None, "billing_country": None, "is_recurring": False},
    **{"installments": None},
}
