"""Schema loading, caching, fingerprints, and the diagnosis of bytes fastavro refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from streamer.codec import schemas as avro
from streamer.codec.diagnose import diagnose
from streamer.errors import ConfigError
from tests.fixtures.events import (
    CURRENT_SCHEMA,
    SCORED_SCHEMA,
    V1_SCHEMA,
    V3_SCHEMA,
    crc64_avro,
    rabin_fingerprint,
)

RECORD = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}


def test_schemas_dir_is_the_repository_schemas_directory() -> None:
    assert avro.SCHEMAS_DIR.resolve() == CURRENT_SCHEMA.parent


@pytest.mark.parametrize(
    "ref",
    ["transaction_event", "transaction_event.avsc", str(CURRENT_SCHEMA), CURRENT_SCHEMA],
)
def test_load_schema_by_name_or_path(ref: str | Path) -> None:
    schema = avro.load_schema(ref)
    assert schema["name"] == "io.streamer.fraud.TransactionEvent"
    assert schema is avro.transaction_schema()  # parsed once, cached by absolute path


def test_load_schema_from_history_and_another_dir(tmp_path: Path) -> None:
    assert len(avro.load_schema("history/transaction_event.v1")["fields"]) == 10
    shutil.copy(V3_SCHEMA, tmp_path / "event.avsc")
    v3 = avro.load_schema("event", schemas_dir=tmp_path)
    assert "wallet_type" in {f["name"] for f in v3["fields"]}


def test_scored_schema() -> None:
    assert avro.scored_schema()["name"] == "io.streamer.fraud.ScoredEvent"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "cannot read"),
        ("{not json", "invalid Avro schema"),
        ('"string"', "invalid Avro schema"),  # wire schemas are records
        ('{"type": "record", "name": "R", "fields": [{"name": "a", "type": "nope"}]}', "invalid"),
    ],
)
def test_load_schema_refuses_missing_or_invalid_files(
    tmp_path: Path, content: str | None, why: str
) -> None:
    path = tmp_path / "bad.avsc"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=why):
        avro.load_schema(path)


# Apache Avro's published test vectors (share/test/data/schema-tests.txt), signed longs.
@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ('"null"', 7195948357588979594),
        ('"boolean"', -6970731678124411036),
        ('"int"', 8247732601305521295),
        ('{"type":"fixed","name":"foo","size":15}', 1756455273707447556),
        (
            '{"type":"record","name":"foo","fields":[{"name":"f1","type":"boolean"}]}',
            7843277075252814651,
        ),
    ],
)
def test_fingerprint_matches_avro_test_vectors(schema: str, expected: int) -> None:
    assert avro.fingerprint(schema) == expected.to_bytes(8, "little", signed=True)


def test_reference_fingerprint_helper_matches_the_vectors_too() -> None:
    assert crc64_avro(b'"null"') == (7195948357588979594).to_bytes(8, "little")


@pytest.mark.parametrize("path", [CURRENT_SCHEMA, SCORED_SCHEMA, V1_SCHEMA, V3_SCHEMA])
def test_fingerprint_of_raw_text_and_parsed_schema_agree(path: Path) -> None:
    text = path.read_text()
    expected = rabin_fingerprint(path)
    assert avro.fingerprint(text) == expected
    assert avro.fingerprint(json.loads(text)) == expected
    assert avro.fingerprint(avro.load_schema(path)) == expected


def test_fingerprint_ignores_docs_defaults_and_logical_types() -> None:
    # Parsing Canonical Form keeps only what affects the binary encoding.
    schema = avro.transaction_schema()
    assert avro.fingerprint(avro.without_logical_types(schema)) == avro.fingerprint(schema)
    versions = {avro.fingerprint(avro.load_schema(p)) for p in (CURRENT_SCHEMA, V1_SCHEMA)}
    assert len(versions) == 2


def test_known_schemas_includes_history() -> None:
    known = avro.known_schemas()
    assert set(known) >= {rabin_fingerprint(p) for p in (CURRENT_SCHEMA, SCORED_SCHEMA, V1_SCHEMA)}
    assert all(len(key) == 8 for key in known)
    count = len(known)
    known.clear()  # callers get a copy; the cache survives
    assert len(avro.known_schemas()) == count


def test_known_schemas_of_another_directory(tmp_path: Path) -> None:
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(V3_SCHEMA, tmp_path / "nested" / "deeper" / "v3.avsc")
    (tmp_path / "notes.txt").write_text("not a schema")
    assert list(avro.known_schemas(tmp_path)) == [rabin_fingerprint(V3_SCHEMA)]


def test_known_schemas_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        avro.known_schemas(tmp_path / "nowhere")


def test_without_logical_types_leaves_the_cached_schema_alone() -> None:
    schema = avro.transaction_schema()
    plain = avro.without_logical_types(schema)
    event_time = next(f for f in plain["fields"] if f["name"] == "event_time")
    assert event_time["type"] == "long"
    original = next(f for f in schema["fields"] if f["name"] == "event_time")
    assert original["type"] == {"type": "long", "logicalType": "timestamp-millis"}


def test_schema_json_keeps_docs_and_defaults() -> None:
    text = avro.schema_json(avro.transaction_schema())
    raw = json.loads(text)
    assert "__fastavro_parsed" not in text
    assert raw["doc"].startswith("One card-payment authorization")
    assert {f["name"]: f.get("default") for f in raw["fields"]}["is_recurring"] is False
    assert avro.fingerprint(text) == rabin_fingerprint(CURRENT_SCHEMA)


def test_parse_refuses_non_records() -> None:
    with pytest.raises(ValueError, match="record"):
        avro.parse('["null", "string"]')


SMALL: dict[str, Any] = avro.parse(
    {
        "type": "record",
        "name": "ns.Small",
        "fields": [
            {"name": "n", "type": "int"},
            {"name": "s", "type": ["null", "string"]},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
            {"name": "e2", "type": "ns.E"},
            {"name": "f", "type": {"type": "fixed", "name": "F", "size": 2}},
            {"name": "xs", "type": {"type": "array", "items": "double"}},
            {"name": "m", "type": {"type": "map", "values": "boolean"}},
        ],
    }
)
VALID = (
    b"\x02" + b"\x02\x02h" + b"\x02" + b"\x00" + b"ab" + b"\x02" + b"\x00" * 8 + b"\x00" + b"\x00"
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (VALID, None),
        (VALID + b"extra", None),  # trailing bytes are the caller's concern
        (b"\x03\x02\x02h\x02\x00ab\x01\x10" + b"\x00" * 8 + b"\x00\x00", None),  # sized block
        (b"", ("Truncated", "Small.n")),
        (b"\x80", ("Truncated", "Small.n")),
        (b"\xff" * 6, ("NotAvro", "int varint longer than")),
        (b"\x02\x04", ("NotAvro", "union index 2 out of range in Small.s")),
        (b"\x02\x02\x03", ("NotAvro", "negative length -2 in Small.s")),
        (b"\x02\x02\x14abc", ("Truncated", "Small.s")),
        (b"\x02\x02\x02\xff", ("NotAvro", "invalid UTF-8 in Small.s")),
        (b"\x02\x00\x04", ("NotAvro", "enum index 2 out of range in Small.e")),
        (b"\x02\x00\x01", ("NotAvro", "enum index -1 out of range in Small.e")),
        (b"\x02\x00\x02\x06", ("NotAvro", "enum index 3 out of range in Small.e2")),
        (b"\x02\x00\x02\x00a", ("Truncated", "Small.f")),
        (b"\x02\x00\x02\x00ab\x7e", ("Truncated", "Small.xs")),
        (b"\x02\x00\x02\x00ab\x02\x00\x00", ("Truncated", "Small.xs[0]")),
        (VALID[:-1] + b"\x02\x02k\x07", ("NotAvro", "boolean byte other than 0 or 1 in Small.m")),
    ],
)
def test_diagnose(data: bytes, expected: tuple[str, str] | None) -> None:
    found = diagnose(SMALL, data)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert found[0] == expected[0]
        assert expected[1] in found[1]


def test_diagnose_starts_after_a_header() -> None:
    assert diagnose(SMALL, b"HEADER" + VALID, start=6) is None
    assert diagnose(SMALL, b"HEADER" + VALID[:3], start=6) == (
        "Truncated",
        "payload ends at byte 9 inside Small.s",
    )
