"""Encoders: records to framed Kafka message values, with the generated Avro writer.

``make_encoder`` picks the framing (see ``wire.py``); the Avro binary comes from the
function ``codegen.encoder_for`` generates for the schema, the same bytes fastavro writes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streamer.codec.codegen import EncodeFn, encoder_for
from streamer.codec.columns import Column, records_of
from streamer.codec.framing import (
    SINGLE_OBJECT_MAGIC,
    SchemaRegistry,
    SerializerOptions,
    WireFormat,
)
from streamer.codec.schemas import Schema, fingerprint, without_logical_types
from streamer.errors import ConfigError


class Encoder:
    """Encodes records (timestamps as int epoch millis) with one schema and framing."""

    def __init__(self, schema: Schema, header: Callable[[], bytes]) -> None:
        self._encode: EncodeFn = encoder_for(without_logical_types(schema))
        self._header: bytes | None = None
        self._make_header = header  # called on first use: it may talk to a registry

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """The framed bytes; raises ``ValueError``/``TypeError`` for a record not fitting
        the schema, ``DependencyError`` when the registry cannot register the schema."""
        header = self._framing()  # first: making it may change the encoder (use-latest)
        try:
            return self._encode(record, header)
        except (KeyError, AttributeError, struct.error) as exc:
            raise _not_fitting(exc) from exc

    def prepare(self) -> None:
        """Make the framing header now rather than on first use (a start-up check: a
        registry that refuses the schema stops start-up, not the first batch)."""
        self._framing()

    def encode_many(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """``encode`` applied to each record, in order (one call for a batch: cheaper)."""
        header = self._framing()
        encode = self._encode
        try:
            return [encode(record, header) for record in records]
        except (KeyError, AttributeError, struct.error) as exc:
            raise _not_fitting(exc) from exc

    def encode_columns(self, columns: Mapping[str, Column], n: int) -> list[bytes]:
        """``encode_many`` of ``n`` records given as columns (a list holds one value per
        record, a 1-tuple one for all): the C encoder reads them with no dict per record."""
        header = self._framing()
        encode = self._encode
        fields: tuple[str, ...] | None = getattr(encode, "fields", None)
        if fields is None or not columns.keys() >= set(fields):
            return self.encode_many(records_of(columns, n))
        try:
            out: list[bytes] = encode.encode_columns(  # type: ignore[attr-defined]
                tuple(columns[name] for name in fields), n, header
            )
        except (KeyError, AttributeError, struct.error) as exc:
            raise _not_fitting(exc) from exc
        return out

    def _framing(self) -> bytes:
        """The framing header, made on first use. Call it before reading ``_encode``: a
        registry's latest version, found on first use, brings its own encoder."""
        header = self._header
        if header is None:
            header = self._header = self._make_header()
        return header


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
    options: SerializerOptions | None = None,
) -> Encoder:
    """An encoder writing ``schema`` records in ``fmt``.

    ``confluent`` finds the schema id under ``subject`` on first use (no network in the
    constructor; ``prepare`` does it now), by ``options`` (default: register it, like
    confluent-kafka's serializer; see ``codec.confluent``). Raises ``ConfigError`` for
    missing settings.
    """
    if fmt == "raw":
        return Encoder(schema, lambda: b"")
    if fmt == "single-object":
        header = SINGLE_OBJECT_MAGIC + fingerprint(schema)
        return Encoder(schema, lambda: header)
    if fmt == "confluent":
        if registry is None or not subject:
            raise ConfigError("the confluent wire format needs a schema registry and a subject")
        from streamer.codec.confluent import RegistryEncoder  # it subclasses Encoder

        return RegistryEncoder(schema, registry, subject, options or SerializerOptions())
    raise ConfigError(f"unknown wire format {fmt!r}; use confluent, single-object or raw")
