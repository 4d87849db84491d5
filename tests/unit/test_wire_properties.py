"""Properties of the decoders: whatever the bytes, a record with the reader's fields or a
Rejection, never an exception; valid events survive the round trip."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.codec import schemas as avro
from streamer.codec import wire
from streamer.errors import Rejection
from tests.fixtures.events import ONLINE, V1_AS_CURRENT, V1_EVENT, V1_SCHEMA, V3_SCHEMA

FORMATS: tuple[wire.WireFormat, ...] = get_args(wire.WireFormat)
READER = avro.transaction_schema()
READER_FIELDS = {f["name"] for f in READER["fields"]}
REGISTRY = SchemaRegistryClient.new_client({"url": "mock://wire-properties"})
ENCODERS = {
    fmt: wire.make_encoder(fmt, schema=READER, registry=REGISTRY, subject="tx-value")
    for fmt in FORMATS
}
DECODERS = {fmt: wire.make_decoder(fmt, reader_schema=READER, registry=REGISTRY) for fmt in FORMATS}
# A raw decoder whose writer has arrays, maps of nothing and nested unions: more to get wrong.
V3_RAW = wire.make_decoder("raw", reader_schema=READER, writer_schema=avro.load_schema(V3_SCHEMA))

PROPERTY = settings(
    deadline=None,  # the first example of a run pays for registry lookups
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _symbols(field: str) -> list[str]:
    return next(f["type"]["symbols"] for f in READER["fields"] if f["name"] == field)


def _optional(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | values


texts = st.text(max_size=40)
events = st.fixed_dictionaries(
    {
        "transaction_id": texts,
        "card_id": texts,
        "merchant_id": texts,
        "event_time": st.integers(-(2**63), 2**63 - 1),
        "amount_minor": st.integers(-(2**63), 2**63 - 1),
        "currency": texts,
        "mcc": st.integers(-(2**31), 2**31 - 1),
        "merchant_country": texts,
        "channel": st.sampled_from(_symbols("channel")),
        "entry_mode": st.sampled_from(_symbols("entry_mode")),
        "card_present": st.booleans(),
        "three_ds": _optional(st.booleans()),
        "terminal_id": _optional(texts),
        "acquirer_id": _optional(texts),
        "device_id": _optional(texts),
        "ip_address": _optional(texts),
        "billing_country": _optional(texts),
        "is_recurring": st.booleans(),
    }
)


def header(fmt: wire.WireFormat) -> bytes:
    """The framing header our encoder writes for the current schema."""
    return ENCODERS[fmt].encode(ONLINE)[: {"raw": 0, "single-object": 10, "confluent": 5}[fmt]]


def assert_record_or_rejection(result: Any) -> None:
    if isinstance(result, Rejection):
        assert result.stage == "decode"
        assert result.error_class in wire.ERROR_CLASSES - wire.RETRIABLE_ERROR_CLASSES
        assert isinstance(result.message, str)
    else:
        assert type(result) is dict
        assert set(result) == READER_FIELDS
        assert type(result["event_time"]) is int


@pytest.mark.parametrize("fmt", FORMATS)
@PROPERTY
@given(event=events)
def test_valid_events_round_trip(fmt: wire.WireFormat, event: dict[str, Any]) -> None:
    assert DECODERS[fmt].decode(ENCODERS[fmt].encode(event)) == event


V1 = avro.load_schema(V1_SCHEMA)
V1_RAW = wire.make_decoder("raw", reader_schema=READER, writer_schema=V1)
V1_ENCODER = wire.make_encoder("raw", schema=V1)
V1_DEFAULTS = {k: v for k, v in V1_AS_CURRENT.items() if k not in V1_EVENT}


@given(event=events)
def test_v1_events_read_with_the_defaults_of_the_new_fields(event: dict[str, Any]) -> None:
    old = {k: v for k, v in event.items() if k in V1_EVENT}
    old["amount_minor"] %= 2**31  # an int in v1
    old["channel"] = "ATM"  # v1 had four channels
    assert V1_RAW.decode(V1_ENCODER.encode(old)) == old | V1_DEFAULTS


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300))
def test_any_bytes_give_a_record_or_a_rejection(fmt: wire.WireFormat, payload: bytes) -> None:
    assert_record_or_rejection(DECODERS[fmt].decode(payload))


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300))
def test_any_body_behind_a_valid_header(fmt: wire.WireFormat, body: bytes) -> None:
    assert_record_or_rejection(DECODERS[fmt].decode(header(fmt) + body))


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300))
def test_any_body_for_a_writer_with_arrays_and_nested_unions(body: bytes) -> None:
    assert_record_or_rejection(V3_RAW.decode(body))


@pytest.mark.parametrize("fmt", FORMATS)
@given(event=events, data=st.data())
def test_every_truncation_is_reported_as_truncated(
    fmt: wire.WireFormat, event: dict[str, Any], data: st.DataObject
) -> None:
    payload = ENCODERS[fmt].encode(event)
    cut = data.draw(st.integers(1, len(payload) - 1), label="cut")
    result = DECODERS[fmt].decode(payload[:cut])
    assert isinstance(result, Rejection)
    assert result.error_class == "Truncated"


@pytest.mark.parametrize("fmt", FORMATS)
@given(event=events, data=st.data())
def test_bit_flips_never_raise(
    fmt: wire.WireFormat, event: dict[str, Any], data: st.DataObject
) -> None:
    payload = bytearray(ENCODERS[fmt].encode(event))
    for bit in data.draw(st.lists(st.integers(0, len(payload) * 8 - 1), min_size=1, max_size=3)):
        payload[bit // 8] ^= 1 << (bit % 8)
    assert_record_or_rejection(DECODERS[fmt].decode(bytes(payload)))


@given(event=events, magic=st.integers(1, 255))
def test_confluent_wrong_magic_byte(event: dict[str, Any], magic: int) -> None:
    payload = bytes([magic]) + ENCODERS["confluent"].encode(event)[1:]
    result = DECODERS["confluent"].decode(payload)
    assert isinstance(result, Rejection)
    assert result.error_class == "BadMagicByte"


@given(event=events, magic=st.binary(min_size=2, max_size=2).filter(lambda m: m != b"\xc3\x01"))
def test_single_object_wrong_magic_bytes(event: dict[str, Any], magic: bytes) -> None:
    payload = magic + ENCODERS["single-object"].encode(event)[2:]
    result = DECODERS["single-object"].decode(payload)
    assert isinstance(result, Rejection)
    assert result.error_class == "BadMagicByte"
