"""Encoders: records to framed Kafka message values, with the generated Avro writer.

``make_encoder`` picks the framing (see ``wire.py``); the Avro binary comes from the
function ``codegen.encoder_for`` generates for the schema, the same bytes fastavro writes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streamer.codec.codegen import EncodeFn, encoder_for
from streamer.codec.framing import (
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_MAGIC,
    SchemaRegistry,
    WireFormat,
    redact,
)
from streamer.codec.schemas import Schema, fingerprint, schema_json, without_logical_types
from streamer.errors import ConfigError, DependencyError


class Encoder:
    """Encodes records (timestamps as int epoch millis) with one schema and framing."""

    def __init__(self, schema: Schema, header: Callable[[], bytes]) -> None:
        self._encode: EncodeFn = encoder_for(without_logical_types(schema))
        self._header: bytes | None = None
        self._make_header = header  # called on first use: it may talk to a registry

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """The framed bytes; raises ``ValueError``/``TypeError`` for a record not fitting
        the schema, ``DependencyError`` when the registry cannot register the schema."""
        header = self._header
        if header is None:
            header = self._header = self._make_header()
        try:
            return self._encode(record, header)
        except (KeyError, AttributeError, struct.error) as exc:
            raise _not_fitting(exc) from exc

    def encode_many(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """``encode`` applied to each record, in order (one call for a batch: cheaper)."""
        header = self._header
        if header is None:
            header = self._header = self._make_header()
        encode = self._encode
        try:
            return [encode(record, header) for record in records]
        except (KeyError, AttributeError, struct.error) as exc:
            raise _not_fitting(exc) from exc


def _not_fitting(exc: Exception) -> Exception:
    """The generated encoder's slips, as the ``ValueError``/``TypeError`` callers expect."""
    if isinstance(exc, KeyError):
        return ValueError(f"the record has no value for field {exc}")
    return TypeError(f"a value does not fit its field's type: {exc}")


def make_encoder(
    fmt: WireFormat,
    *,
    schema: Schema,
    registry: SchemaRegistry | None = None,
    subject: str | None = None,
) -> Encoder:
    """An encoder writing ``schema`` records in ``fmt``.

    ``confluent`` registers the schema under ``subject`` on first use (no network in the
    constructor) and caches the id. Raises ``ConfigError`` for missing settings.
    """
    if fmt == "raw":
        return Encoder(schema, lambda: b"")
    if fmt == "single-object":
        header = SINGLE_OBJECT_MAGIC + fingerprint(schema)
        return Encoder(schema, lambda: header)
    if fmt == "confluent":
        if registry is None or not subject:
            raise ConfigError("the confluent wire format needs a schema registry and a subject")
        return Encoder(schema, lambda: _register(registry, subject, schema))
    raise ConfigError(f"unknown wire format {fmt!r}; use confluent, single-object or raw")


def _register(registry: SchemaRegistry, subject: str, schema: Schema) -> bytes:
    # Imported on first registration: the registry client pulls in an HTTP stack that the
    # raw and single-object framings never need.
    from confluent_kafka.schema_registry import Schema as RegistrySchema

    try:
        schema_id = registry.register_schema(subject, RegistrySchema(schema_json(schema), "AVRO"))
    except Exception as exc:
        message = redact(str(exc))
        raise DependencyError(
            f"cannot register the schema under subject {subject!r}: {message}"
        ) from exc
    return CONFLUENT_MAGIC + int(schema_id).to_bytes(4, "big")
