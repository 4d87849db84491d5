"""Wire formats: Kafka message values to records and back, chosen by name.

``confluent``      magic byte 0, 4-byte big-endian schema id, Avro binary; the writer
                   schema comes from a schema registry, fetched once per id.
``single-object``  ``C3 01``, 8-byte little-endian CRC-64-AVRO fingerprint, Avro binary;
                   writer schemas are the ``.avsc`` files under ``schemas/`` (history too).
``raw``            bare Avro binary written with a configured schema.

Decoding never raises for any payload: every failure is a ``Rejection`` (stage
``decode``) whose ``error_class`` is one of ``ERROR_CLASSES``. Writer schemas are resolved
to the reader schema by Avro's rules. Logical types are stripped before parsing, so
``timestamp-millis`` fields are ints of epoch milliseconds both ways (a ``datetime`` would
cost ~15% more decoding time, see ``bench/codec.py``, and every consumer wants millis).

The Avro binary itself is read and written by functions generated for each schema pair
(``codegen.py``): they decode the same records as fastavro (``tests/unit/
test_codec_differential.py``) in about half the time, and reject bytes that fastavro
accepts silently (over-long varints, boolean bytes other than 0/1, negative enum and union
indexes). ``bench/codec.py`` compares the two.

``Decoder.decode_columns`` decodes a whole batch into columns (``codec.columns.Records``)
with the C decoder, no dict per record, when every payload is a plain datum of the reader
schema under one header: the stream's hot path. Anything else (an old writer schema, a
bad payload, a registry lookup to make) is left to ``decode``, one payload at a time.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from streamer.codec.codegen import ReadFn, reader_for
from streamer.codec.columns import Records
from streamer.codec.diagnose import diagnose
from streamer.codec.encoding import Encoder, make_encoder
from streamer.codec.framing import (
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_MAGIC,
    SchemaRegistry,
    SerializerOptions,
    WireFormat,
    redact,
)
from streamer.codec.runtime import IncompatibleError
from streamer.codec.schemas import Schema, fingerprint, known_schemas, parse, without_logical_types
from streamer.errors import ConfigError, Rejection

Decoded = dict[str, Any] | Rejection

ERROR_CLASSES = frozenset(
    {
        *("Tombstone", "EmptyMessage", "Oversized", "BadMagicByte", "UnknownSchemaId"),
        *("UnknownFingerprint", "IncompatibleSchema", "Truncated", "TrailingBytes"),
        *("NotAvro", "RegistryUnavailable"),
    }
)
"""Every ``Rejection.error_class`` a decoder produces."""

RETRIABLE_ERROR_CLASSES = frozenset({"RegistryUnavailable"})
"""Rejections that are not the message's fault: retry the batch instead of dead-lettering."""

_MAX_MESSAGE = 300  # fastavro's resolution errors quote whole schemas


def is_retriable(rejection: Rejection) -> bool:
    """True when the same payload may decode later (the schema registry was unreachable)."""
    return rejection.error_class in RETRIABLE_ERROR_CLASSES


def _reject(error_class: str, message: str) -> Rejection:
    return Rejection(error_class, redact(message)[:_MAX_MESSAGE], "decode")


class _Resolved:
    """A writer schema paired with the reader schema: compiled once, then read many times."""

    __slots__ = ("_read", "_refusal", "writer")

    def __init__(self, writer: Schema, reader: Schema) -> None:
        self.writer = without_logical_types(writer)
        self._refusal: str | None = None
        try:
            self._read: ReadFn = reader_for(self.writer, without_logical_types(reader))
        except Exception as exc:  # noqa: BLE001 - whatever a registry holds, do not crash
            self._refusal = f"cannot resolve writer schema to reader: {type(exc).__name__}: {exc}"

    def read(self, payload: bytes, start: int) -> Decoded:
        if self._refusal is not None:
            return _reject("IncompatibleSchema", self._refusal)
        try:
            record, end = self._read(payload, start)
        except IncompatibleError as exc:
            return _reject("IncompatibleSchema", f"writer schema not readable as reader: {exc}")
        except Exception as exc:  # noqa: BLE001 - any bytes must give a Rejection, not raise
            return self._explain(payload, start, exc)
        if end != len(payload):
            if end > len(payload):  # a length pointed past the end
                return self._explain(payload, start, EOFError("payload ends inside the record"))
            return _reject("TrailingBytes", f"{len(payload) - end} bytes left after the record")
        return record

    def read_columns(
        self, payloads: list[bytes | None], header: bytes, max_bytes: int
    ) -> Records | None:
        """``payloads`` (each ``header`` + a datum) as columns, when the C decoder reads
        every one of them; None otherwise (``read`` them one by one)."""
        if self._refusal is not None:
            return None
        decode_columns = getattr(self._read, "decode_columns", None)
        if decode_columns is None:  # not the C decoder: Avro resolution, or no C at all
            return None
        columns = decode_columns(payloads, header, max_bytes)
        if columns is None:
            return None
        names = self._read.fields  # type: ignore[attr-defined]  # the C decoder's
        return Records(dict(zip(names, columns, strict=True)), len(payloads))

    def _explain(self, payload: bytes, start: int, exc: Exception) -> Rejection:
        try:
            found = diagnose(self.writer, payload, start)
        except Exception:  # noqa: BLE001 - diagnosis is best effort
            found = None
        if found is None:
            return _reject("NotAvro", f"{type(exc).__name__}: {exc}")
        return _reject(*found)


class Decoder(ABC):
    """Decodes message values of one wire format into reader-schema records."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes

    def decode(self, payload: bytes | None) -> Decoded:
        """The record in ``payload``, or the ``Rejection`` saying why there is none."""
        if payload is None:
            return _reject("Tombstone", "message value is null (a tombstone)")
        if not payload:
            return _reject("EmptyMessage", "message value is empty")
        if len(payload) > self._max_bytes:
            return _reject("Oversized", f"{len(payload)} bytes exceeds {self._max_bytes}")
        return self._decode(payload)

    def decode_many(self, payloads: Iterable[bytes | None]) -> list[Decoded]:
        """``decode`` applied to each payload, in order."""
        decode = self.decode
        return [decode(payload) for payload in payloads]

    def decode_columns(self, payloads: Sequence[bytes | None]) -> Records | None:
        """All of ``payloads`` as columns when each is a plain datum of the reader schema
        under the first one's header (the C decoder's fast path); None when any is not, or
        no such path is known yet: then ``decode`` each, which judges every payload."""
        first = payloads[0] if payloads else None
        if not first or len(first) > self._max_bytes:
            return None
        found = self._columnar(first)
        if found is None:
            return None
        header, resolved = found
        return resolved.read_columns(list(payloads), header, self._max_bytes)

    @abstractmethod
    def _decode(self, payload: bytes) -> Decoded: ...

    def _columnar(self, payload: bytes) -> tuple[bytes, _Resolved] | None:
        """The header of ``payload`` and its writer schema, when both are known already."""
        return None


class RawDecoder(Decoder):
    """Bare Avro binary written with one configured writer schema."""

    def __init__(self, reader_schema: Schema, writer_schema: Schema, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self._resolved = _Resolved(writer_schema, reader_schema)

    def _decode(self, payload: bytes) -> Decoded:
        return self._resolved.read(payload, 0)

    def _columnar(self, payload: bytes) -> tuple[bytes, _Resolved] | None:
        return b"", self._resolved


class SingleObjectDecoder(Decoder):
    """Avro single-object encoding; writer schemas found by fingerprint among local files."""

    def __init__(self, reader_schema: Schema, schemas_dir: Path | None, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self._reader = reader_schema
        self._schemas_dir = schemas_dir
        self._writers = known_schemas(schemas_dir)
        self._writers.setdefault(fingerprint(reader_schema), reader_schema)
        self._resolved: dict[bytes, _Resolved] = {}

    def _decode(self, payload: bytes) -> Decoded:
        if payload[:2] != SINGLE_OBJECT_MAGIC:
            if SINGLE_OBJECT_MAGIC.startswith(payload):
                return _reject("Truncated", "payload ends inside the single-object header")
            return _reject("BadMagicByte", f"expected c3 01, got {payload[:2].hex(' ')}")
        if len(payload) < 10:
            return _reject("Truncated", "payload ends inside the single-object header")
        key = payload[2:10]
        resolved = self._resolved_for(key)
        if resolved is None:
            where = self._schemas_dir or "the schemas directory"
            return _reject("UnknownFingerprint", f"no schema in {where} has {key.hex()}")
        return resolved.read(payload, 10)

    def _resolved_for(self, key: bytes) -> _Resolved | None:
        resolved = self._resolved.get(key)
        if resolved is None:
            writer = self._writers.get(key)
            if writer is None:
                return None
            resolved = self._resolved[key] = _Resolved(writer, self._reader)
        return resolved

    def _columnar(self, payload: bytes) -> tuple[bytes, _Resolved] | None:
        if payload[:2] != SINGLE_OBJECT_MAGIC or len(payload) < 10:
            return None
        resolved = self._resolved_for(payload[2:10])
        return None if resolved is None else (payload[:10], resolved)


class ConfluentDecoder(Decoder):
    """Confluent framing; writer schemas fetched from the registry once per schema id.

    Failed lookups are remembered for a short while so that a batch full of one bad id
    (or a dead registry) costs one request, not one per message: unknown ids for
    ``negative_ttl`` seconds, registry outages for ``unavailable_ttl``. Keep
    ``negative_ttl`` short: a message replayed within it after its schema was registered
    is dead-lettered again (``STREAMER_SCHEMA_REGISTRY_UNKNOWN_ID_TTL_S``, default 1 s).
    """

    def __init__(
        self,
        reader_schema: Schema,
        registry: SchemaRegistry,
        max_bytes: int,
        *,
        negative_ttl: float = 1.0,
        unavailable_ttl: float = 1.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_bytes)
        self._reader = reader_schema
        self._registry = registry
        self._negative_ttl, self._unavailable_ttl, self._now = negative_ttl, unavailable_ttl, now
        self._by_id: dict[int, _Resolved | Rejection] = {}  # ids never change meaning
        self._by_fingerprint: dict[bytes, _Resolved] = {}
        self._misses: dict[int, tuple[Rejection, float]] = {}

    def _decode(self, payload: bytes) -> Decoded:
        if payload[0] != 0:
            return _reject("BadMagicByte", f"expected 00, got {payload[:1].hex()}")
        if len(payload) < 5:
            return _reject("Truncated", "payload ends inside the 5-byte confluent header")
        schema_id = int.from_bytes(payload[1:5], "big")
        resolved = self._by_id.get(schema_id)
        if resolved is None:
            resolved = self._lookup(schema_id)
        if isinstance(resolved, Rejection):
            return resolved
        return resolved.read(payload, 5)

    def _columnar(self, payload: bytes) -> tuple[bytes, _Resolved] | None:
        if payload[0] != 0 or len(payload) < 5:
            return None
        resolved = self._by_id.get(int.from_bytes(payload[1:5], "big"))
        return (payload[:5], resolved) if isinstance(resolved, _Resolved) else None

    def _lookup(self, schema_id: int) -> _Resolved | Rejection:
        miss = self._misses.get(schema_id)
        if miss is not None and miss[1] > self._now():
            return miss[0]
        try:
            registered = self._registry.get_schema(schema_id)
        except Exception as exc:  # noqa: BLE001 - the client raises many kinds; classify all
            if getattr(exc, "http_status_code", None) == 404:
                rejection = _reject("UnknownSchemaId", f"schema id {schema_id} is not registered")
                return self._remember_miss(schema_id, rejection, self._negative_ttl)
            message = f"schema registry failed for id {schema_id}: {type(exc).__name__}: {exc}"
            rejection = _reject("RegistryUnavailable", message)
            return self._remember_miss(schema_id, rejection, self._unavailable_ttl)
        result = self._resolve(schema_id, registered)
        self._by_id[schema_id] = result
        return result

    def _resolve(self, schema_id: int, registered: Any) -> _Resolved | Rejection:
        schema_type = getattr(registered, "schema_type", None) or "AVRO"
        if schema_type != "AVRO":
            return _reject("IncompatibleSchema", f"schema id {schema_id} is {schema_type}")
        if getattr(registered, "references", None):
            message = f"schema id {schema_id} uses schema references, which are not supported"
            return _reject("IncompatibleSchema", message)
        try:
            writer = parse(getattr(registered, "schema_str", registered))
        except Exception as exc:  # noqa: BLE001 - whatever the registry holds, do not crash
            return _reject("IncompatibleSchema", f"schema id {schema_id} does not parse: {exc}")
        key = fingerprint(writer)
        if key not in self._by_fingerprint:
            self._by_fingerprint[key] = _Resolved(writer, self._reader)
        return self._by_fingerprint[key]

    def _remember_miss(self, schema_id: int, rejection: Rejection, ttl: float) -> Rejection:
        if len(self._misses) > 10_000:  # random ids must not grow the cache without bound
            self._misses.clear()
        self._misses[schema_id] = (rejection, self._now() + ttl)
        return rejection


def make_decoder(
    fmt: WireFormat,
    *,
    reader_schema: Schema,
    writer_schema: Schema | None = None,
    registry: SchemaRegistry | None = None,
    schemas_dir: Path | None = None,
    max_bytes: int = 1_000_000,
    unknown_id_ttl_s: float = 1.0,
) -> Decoder:
    """A decoder for ``fmt`` producing ``reader_schema`` records.

    ``writer_schema`` (raw only) defaults to the reader schema; ``registry`` is required
    for ``confluent``; ``schemas_dir`` (single-object only) defaults to ``SCHEMAS_DIR``;
    ``unknown_id_ttl_s`` (confluent only): how long an unknown schema id is answered
    from memory.
    Raises ``ConfigError`` for a missing collaborator or an unknown format.
    """
    if fmt == "raw":
        return RawDecoder(reader_schema, writer_schema or reader_schema, max_bytes)
    if fmt == "single-object":
        return SingleObjectDecoder(reader_schema, schemas_dir, max_bytes)
    if fmt == "confluent":
        if registry is None:
            raise ConfigError("the confluent wire format needs a schema registry (url)")
        return ConfluentDecoder(reader_schema, registry, max_bytes, negative_ttl=unknown_id_ttl_s)
    raise ConfigError(f"unknown wire format {fmt!r}; use confluent, single-object or raw")


__all__ = [
    "CONFLUENT_MAGIC",
    "ERROR_CLASSES",
    "RETRIABLE_ERROR_CLASSES",
    "SINGLE_OBJECT_MAGIC",
    "ConfluentDecoder",
    "Decoded",
    "Decoder",
    "Encoder",
    "RawDecoder",
    "SchemaRegistry",
    "SerializerOptions",
    "SingleObjectDecoder",
    "WireFormat",
    "is_retriable",
    "make_decoder",
    "make_encoder",
]
