"""The three framings: round trips, schema evolution, the registry cache, every rejection."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any, get_args

import pytest
from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError

from streamer.codec import schemas as avro
from streamer.codec import wire
from streamer.errors import ConfigError, DependencyError, Rejection
from tests.fixtures.events import (
    CURRENT_SCHEMA,
    EVENTS,
    ONLINE,
    SCORED_SCHEMA,
    V1_AS_CURRENT,
    V1_EVENT,
    V1_SCHEMA,
    V3_AS_CURRENT,
    V3_EVENT,
    V3_SCHEMA,
    avro_body,
    fastavro_body,
    rabin_fingerprint,
    schema_text,
)

FORMATS: tuple[wire.WireFormat, ...] = get_args(wire.WireFormat)
READER = avro.transaction_schema()
SUBJECT = "transactions-value"


class CountingRegistry:
    """confluent-kafka's in-memory registry, counting lookups; optionally failing."""

    def __init__(self) -> None:
        self.client = SchemaRegistryClient.new_client({"url": "mock://wire-tests"})
        self.gets = 0
        self.registrations = 0
        self.fail_with: Exception | None = None

    def get_schema(self, schema_id: int) -> Any:
        self.gets += 1
        if self.fail_with is not None:
            raise self.fail_with
        return self.client.get_schema(schema_id)

    def register_schema(self, subject_name: str, schema: Any) -> int:
        self.registrations += 1
        if self.fail_with is not None:
            raise self.fail_with
        return int(self.client.register_schema(subject_name, schema))

    def register_file(self, path: Path, schema_type: str = "AVRO") -> int:
        return int(
            self.client.register_schema(SUBJECT, RegistrySchema(schema_text(path), schema_type))
        )


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def registry() -> CountingRegistry:
    return CountingRegistry()


def frame(
    fmt: wire.WireFormat, schema_path: Path, body: bytes, registry: CountingRegistry
) -> bytes:
    """The framing built by hand, independent of ``streamer.codec.wire``."""
    if fmt == "confluent":
        return b"\x00" + registry.register_file(schema_path).to_bytes(4, "big") + body
    if fmt == "single-object":
        return b"\xc3\x01" + rabin_fingerprint(schema_path) + body
    return body


def decoder(
    fmt: wire.WireFormat, registry: CountingRegistry, writer: Path | None = None, **kw: Any
) -> wire.Decoder:
    writer_schema = avro.load_schema(writer) if writer and fmt == "raw" else None
    return wire.make_decoder(
        fmt, reader_schema=READER, writer_schema=writer_schema, registry=registry, **kw
    )


def encoded(fmt: wire.WireFormat, registry: CountingRegistry, record: dict[str, Any]) -> bytes:
    return wire.make_encoder(fmt, schema=READER, registry=registry, subject=SUBJECT).encode(record)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("event", EVENTS, ids=["online", "terminal"])
def test_round_trip_with_our_encoder(
    fmt: wire.WireFormat, event: dict[str, Any], registry: CountingRegistry
) -> None:
    payload = encoded(fmt, registry, event)
    decoded = decoder(fmt, registry).decode(payload)
    assert decoded == event
    assert isinstance(decoded, dict)
    assert type(decoded["event_time"]) is int  # epoch millis, never a datetime


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("event", EVENTS, ids=["online", "terminal"])
def test_decodes_what_an_independent_writer_wrote(
    fmt: wire.WireFormat, event: dict[str, Any], registry: CountingRegistry
) -> None:
    payload = frame(fmt, CURRENT_SCHEMA, avro_body(CURRENT_SCHEMA, event), registry)
    assert decoder(fmt, registry).decode(payload) == event


@pytest.mark.parametrize("fmt", FORMATS)
def test_our_encoder_writes_the_standard_framing(
    fmt: wire.WireFormat, registry: CountingRegistry
) -> None:
    body = avro_body(CURRENT_SCHEMA, ONLINE)
    payload = encoded(fmt, registry, ONLINE)
    if fmt != "confluent":
        assert payload == frame(fmt, CURRENT_SCHEMA, body, registry)
        return
    # The mock registry numbers schema texts, and ours is re-serialized: compare by content.
    assert payload[:1] == b"\x00"
    assert payload[5:] == body
    registered = registry.client.get_schema(int.from_bytes(payload[1:5], "big")).schema_str
    assert registered is not None
    assert avro.fingerprint(registered) == rabin_fingerprint(CURRENT_SCHEMA)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("writer", "event", "expected"),
    [(V1_SCHEMA, V1_EVENT, V1_AS_CURRENT), (V3_SCHEMA, V3_EVENT, V3_AS_CURRENT)],
    ids=["v1", "v3"],
)
def test_older_and_newer_writers_resolve_to_the_current_reader(
    fmt: wire.WireFormat,
    writer: Path,
    event: dict[str, Any],
    expected: dict[str, Any],
    registry: CountingRegistry,
    tmp_path: Path,
) -> None:
    schemas_dir = None
    if fmt == "single-object" and writer == V3_SCHEMA:
        # v3 is not in the repository: a deployment that knows it has it in its schemas dir.
        shutil.copytree(avro.SCHEMAS_DIR, tmp_path, dirs_exist_ok=True)
        shutil.copy(V3_SCHEMA, tmp_path / "history" / "transaction_event.v3.avsc")
        schemas_dir = tmp_path
    payload = frame(fmt, writer, avro_body(writer, event), registry)
    decoded = decoder(fmt, registry, writer=writer, schemas_dir=schemas_dir).decode(payload)
    assert decoded == expected


def test_v3_enum_symbol_known_to_the_reader_is_kept(registry: CountingRegistry) -> None:
    payload = frame(
        "confluent", V3_SCHEMA, avro_body(V3_SCHEMA, V3_EVENT | {"entry_mode": "CHIP"}), registry
    )
    assert decoder("confluent", registry).decode(payload) == ONLINE | {"entry_mode": "CHIP"}


def test_scored_events_round_trip(registry: CountingRegistry) -> None:
    scored_schema = avro.scored_schema()
    record = {
        **{k: ONLINE[k] for k in ("transaction_id", "card_id", "merchant_id", "amount_minor")},
        "currency": "EUR",
        "score": 0.73,
        "decision": "REVIEW",
        "review_threshold": 0.5,
        "decline_threshold": 0.9,
        "model_name": "fraud-lgbm",
        "model_version": "3",
        "feature_status": "PARTIAL",
        "event_time": ONLINE["event_time"],
        "received_time": ONLINE["event_time"] + 40,
        "scored_time": ONLINE["event_time"] + 45,
        "publish_time": ONLINE["event_time"] + 46,
        "processing_latency_ms": 6.0,
        "source_partition": 3,
        "source_offset": 1234567,
        "shadow_score": 0.41,
        "shadow_decision": "APPROVE",
        "shadow_model_version": "4",
        "features": {"amount": 12.5, "txn_count_1h": 3.0},
        "reasons": [
            {
                "code": "VELOCITY_1H",
                "feature": "txn_count_1h",
                "value": 3.0,
                "contribution": 0.75,
                "text": "3 transactions in the last hour",
            }
        ],
    }
    for fmt in FORMATS:
        enc = wire.make_encoder(
            fmt, schema=scored_schema, registry=registry, subject="scored-value"
        )
        dec = wire.make_decoder(fmt, reader_schema=scored_schema, registry=registry)
        assert dec.decode(enc.encode(record)) == record
    assert avro_body(SCORED_SCHEMA, record) == wire.make_encoder(
        "raw", schema=scored_schema
    ).encode(record)


def test_encoder_wants_int_millis_not_datetimes() -> None:
    from datetime import UTC, datetime

    enc = wire.make_encoder("raw", schema=READER)
    with pytest.raises(TypeError):
        enc.encode(ONLINE | {"event_time": datetime(2025, 1, 1, tzinfo=UTC)})


def test_confluent_encoder_registers_lazily_once(registry: CountingRegistry) -> None:
    enc = wire.make_encoder("confluent", schema=READER, registry=registry, subject=SUBJECT)
    assert registry.registrations == 0  # no network in the constructor
    payloads = enc.encode_many(EVENTS * 3)
    assert registry.registrations == 1
    registered = registry.client.get_latest_version(SUBJECT)
    assert registered.schema_id is not None
    assert {p[:5] for p in payloads} == {b"\x00" + registered.schema_id.to_bytes(4, "big")}
    text = registered.schema.schema_str
    assert text is not None
    assert avro.fingerprint(text) == rabin_fingerprint(CURRENT_SCHEMA)
    assert json.loads(text)["fields"][-1]["default"] is False  # defaults are registered


def test_confluent_encoder_registration_failure_is_a_dependency_error(
    registry: CountingRegistry,
) -> None:
    registry.fail_with = ConnectionError("http://svc:s3cret@registry:8081 refused")
    enc = wire.make_encoder("confluent", schema=READER, registry=registry, subject=SUBJECT)
    with pytest.raises(DependencyError, match="transactions-value") as excinfo:
        enc.encode(ONLINE)
    assert "s3cret" not in str(excinfo.value)


def test_confluent_decoder_fetches_each_id_once(registry: CountingRegistry) -> None:
    dec = decoder("confluent", registry)
    payload = encoded("confluent", registry, ONLINE)
    v1_payload = frame("confluent", V1_SCHEMA, avro_body(V1_SCHEMA, V1_EVENT), registry)
    results = dec.decode_many([payload, v1_payload] * 50)
    assert results == [ONLINE, V1_AS_CURRENT] * 50
    assert registry.gets == 2


def test_unknown_schema_id_is_remembered_briefly(registry: CountingRegistry) -> None:
    clock = Clock()
    dec = wire.ConfluentDecoder(READER, registry, 1_000_000, negative_ttl=10.0, now=clock)
    body = avro_body(CURRENT_SCHEMA, ONLINE)
    unknown = b"\x00\x00\x00\x00\x01" + body  # nothing registered yet
    assert _error_class(dec.decode(unknown)) == "UnknownSchemaId"
    assert _error_class(dec.decode(unknown)) == "UnknownSchemaId"
    assert registry.gets == 1
    assert registry.register_file(CURRENT_SCHEMA) == 1  # the producer registers it late
    clock.t += 5
    assert _error_class(dec.decode(unknown)) == "UnknownSchemaId"
    clock.t += 6
    assert dec.decode(unknown) == ONLINE
    assert registry.gets == 2


def test_registry_outage_is_retriable_and_not_hammered(registry: CountingRegistry) -> None:
    clock = Clock()
    dec = wire.ConfluentDecoder(READER, registry, 1_000_000, unavailable_ttl=1.0, now=clock)
    payload = frame("confluent", CURRENT_SCHEMA, avro_body(CURRENT_SCHEMA, ONLINE), registry)
    registry.fail_with = SchemaRegistryError(503, 50301, "unavailable")
    results = dec.decode_many([payload] * 20)
    assert all(isinstance(r, Rejection) and wire.is_retriable(r) for r in results)
    assert registry.gets == 1
    registry.fail_with = None
    clock.t += 1.5
    assert dec.decode(payload) == ONLINE


def test_unreachable_registry_gives_registry_unavailable_without_secrets() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = SchemaRegistryClient({"url": f"http://svc:s3cret@127.0.0.1:{port}", "max.retries": 0})
    dec = wire.make_decoder("confluent", reader_schema=READER, registry=client)
    rejection = dec.decode(b"\x00\x00\x00\x00\x07" + avro_body(CURRENT_SCHEMA, ONLINE))
    assert isinstance(rejection, Rejection)
    assert rejection.error_class == "RegistryUnavailable"
    assert wire.is_retriable(rejection)
    assert "s3cret" not in rejection.message


def _error_class(result: dict[str, Any] | Rejection) -> str:
    assert isinstance(result, Rejection), result
    assert result.stage == "decode"
    assert result.error_class in wire.ERROR_CLASSES
    return result.error_class


MISSING_CARD_PRESENT = {
    "type": "record",
    "name": "TransactionEvent",
    "namespace": "io.streamer.fraud",
    "fields": [
        f for f in json.loads(CURRENT_SCHEMA.read_text())["fields"] if f["name"] != "card_present"
    ],
}
BODY = avro_body(CURRENT_SCHEMA, ONLINE)
BODY_WITHOUT_CARD_PRESENT = fastavro_body(MISSING_CARD_PRESENT, ONLINE)
BAD_UTF8 = b"\x04\xc3\x28" + BODY[BODY.index(b"\x18card") :]  # transaction_id: c3 28
BAD_ENUM = BODY.replace(b"DE\x02\x08", b"DE\x0e\x08", 1)  # channel: symbol 7 of 6
BAD_UNION = BODY.replace(b"\x02\x0c412345", b"\x08\x0c412345")  # acquirer_id: branch 4 of 2


CASES = [
    "Tombstone",
    "EmptyMessage",
    "Oversized",
    "BadMagicByte/confluent",
    "BadMagicByte/single-object",
    "UnknownSchemaId",
    "UnknownFingerprint",
    "IncompatibleSchema/raw",
    "IncompatibleSchema/confluent",
    "IncompatibleSchema/confluent-json",
    "IncompatibleSchema/single-object",
    "Truncated/raw",
    "Truncated/confluent-header",
    "Truncated/single-object-header",
    "Truncated/single-object-magic",
    "TrailingBytes",
    "NotAvro/utf-8",
    "NotAvro/union-index",
    "NotAvro/negative-length",
    "NotAvro/enum-index",
]


def _crafted(
    case: str, registry: CountingRegistry, tmp_path: Path
) -> tuple[wire.Decoder, bytes | None]:
    """A decoder and a payload that must be rejected with error class ``case``'s prefix."""
    confluent = decoder("confluent", registry)
    single = decoder("single-object", registry)
    plain = decoder("raw", registry)
    fp = rabin_fingerprint(CURRENT_SCHEMA)
    if case == "IncompatibleSchema/raw":
        return decoder("raw", registry, writer=SCORED_SCHEMA), BODY
    if case == "IncompatibleSchema/confluent":
        schema_id = registry.client.register_schema(
            SUBJECT, RegistrySchema(json.dumps(MISSING_CARD_PRESENT), "AVRO")
        )
        return confluent, b"\x00" + schema_id.to_bytes(4, "big") + BODY_WITHOUT_CARD_PRESENT
    if case == "IncompatibleSchema/confluent-json":
        schema_id = registry.register_file(CURRENT_SCHEMA, "JSON")
        return confluent, b"\x00" + schema_id.to_bytes(4, "big") + BODY
    if case == "IncompatibleSchema/single-object":
        (tmp_path / "old.avsc").write_text(json.dumps(MISSING_CARD_PRESENT))
        writer_fp = avro.fingerprint(MISSING_CARD_PRESENT)
        return decoder(
            "single-object", registry, schemas_dir=tmp_path
        ), b"\xc3\x01" + writer_fp + BODY_WITHOUT_CARD_PRESENT
    cases: dict[str, tuple[wire.Decoder, bytes | None]] = {
        "Tombstone": (confluent, None),
        "EmptyMessage": (single, b""),
        "Oversized": (decoder("raw", registry, max_bytes=64), BODY),
        "BadMagicByte/confluent": (confluent, b"\x01\x00\x00\x00\x01" + BODY),
        "BadMagicByte/single-object": (single, b"\xc3\x02" + fp + BODY),
        "UnknownSchemaId": (confluent, b"\x00\x00\x01\x00\x00" + BODY),
        "UnknownFingerprint": (single, b"\xc3\x01" + bytes(8) + BODY),
        "Truncated/raw": (plain, BODY[:-1]),
        "Truncated/confluent-header": (confluent, b"\x00\x00\x00"),
        "Truncated/single-object-header": (single, b"\xc3\x01" + fp[:3]),
        "Truncated/single-object-magic": (single, b"\xc3"),
        "TrailingBytes": (plain, BODY + b"\x00"),
        "NotAvro/utf-8": (plain, BAD_UTF8),
        "NotAvro/union-index": (plain, BAD_UNION),
        "NotAvro/negative-length": (plain, b"\x01" + BODY[1:]),
        "NotAvro/enum-index": (plain, BAD_ENUM),
    }
    return cases[case]


@pytest.mark.parametrize("case", CASES)
def test_every_rejection_class_from_a_crafted_payload(
    case: str, registry: CountingRegistry, tmp_path: Path
) -> None:
    dec, payload = _crafted(case, registry, tmp_path)
    result = dec.decode(payload)
    assert _error_class(result) == case.split("/", maxsplit=1)[0]
    assert not wire.is_retriable(result)  # type: ignore[arg-type]
    if case.startswith(("NotAvro", "Truncated/raw")):  # the message points at the field
        assert "TransactionEvent." in result.message  # type: ignore[union-attr]


def test_crafted_payloads_cover_every_class() -> None:
    # RegistryUnavailable is not the payload's doing: see the registry tests above.
    assert {c.split("/")[0] for c in CASES} | {"RegistryUnavailable"} == wire.ERROR_CLASSES


def test_decode_many_keeps_order_and_mixes_results(registry: CountingRegistry) -> None:
    dec = decoder("raw", registry)
    results = dec.decode_many([BODY, None, BODY[:5], avro_body(CURRENT_SCHEMA, EVENTS[1])])
    assert results[0] == ONLINE
    assert [_error_class(r) for r in results[1:3]] == ["Tombstone", "Truncated"]
    assert results[3] == EVENTS[1]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: wire.make_decoder("confluent", reader_schema=READER), "registry"),
        (
            lambda: wire.make_encoder("confluent", schema=READER, registry=CountingRegistry()),
            "subject",
        ),
        (lambda: wire.make_decoder("protobuf", reader_schema=READER), "unknown wire format"),  # type: ignore[arg-type]
        (lambda: wire.make_encoder("json", schema=READER), "unknown wire format"),  # type: ignore[arg-type]
    ],
)
def test_misconfiguration_is_a_config_error(build: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()
