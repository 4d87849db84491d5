"""Avro schemas: where they live, loading and caching them, and their fingerprints.

Schemas are the ``.avsc`` files under ``SCHEMAS_DIR`` (the repository's ``schemas/``
directory; override with ``STREAMER_SCHEMAS_DIR`` or the ``schemas_dir`` arguments).
Older versions of a schema live in ``schemas/history/`` so that events written with them
can still be found by fingerprint. Everything here is parsed once and cached: callers get
shared fastavro schema dicts and must not mutate them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from streamer.errors import ConfigError

Schema = dict[str, Any]
"""A record schema as parsed by ``fastavro.parse_schema``."""

SCHEMAS_DIR: Path = Path(
    os.environ.get("STREAMER_SCHEMAS_DIR") or Path(__file__).resolve().parent.parent / "schemas"
)
"""Directory holding the ``.avsc`` files; a module global so deployments can repoint it."""

# Keys fastavro adds to a parsed schema; they must go before re-parsing or serializing.
_FASTAVRO_KEYS = frozenset({"__fastavro_parsed", "__named_schemas"})
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def parse(schema: str | dict[str, Any]) -> Schema:
    """Parse a record schema given as JSON text or as a dict (raw or already parsed).

    Raises ``ValueError`` when it is not a valid Avro record schema.
    """
    raw = json.loads(schema) if isinstance(schema, str) else schema
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise ValueError("expected an Avro record schema")
    parsed = parse_schema(_plain(raw, drop=_FASTAVRO_KEYS))
    assert isinstance(parsed, dict)  # a record stays a dict; narrows fastavro's union type
    return parsed


def load_schema(path_or_name: str | Path, *, schemas_dir: Path | None = None) -> Schema:
    """Load and parse a schema file, cached by its absolute path.

    ``path_or_name`` is a path to an ``.avsc`` file, or a name relative to ``schemas_dir``
    with or without the suffix: ``"transaction_event"``, ``"history/transaction_event.v1"``.
    Raises ``ConfigError`` when the file is missing or is not a valid record schema.
    """
    path = Path(path_or_name)
    if not path.is_absolute() and not path.is_file():
        if path.suffix != ".avsc":
            path = path.with_name(path.name + ".avsc")
        path = (schemas_dir or SCHEMAS_DIR) / path
    return _load_file(path.resolve())


def transaction_schema() -> Schema:
    """The current input schema, ``TransactionEvent`` (the decoders' reader schema)."""
    return load_schema("transaction_event")


def scored_schema() -> Schema:
    """The output schema, ``ScoredEvent``."""
    return load_schema("scored_event")


def fingerprint(schema: str | dict[str, Any]) -> bytes:
    """CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form.

    Eight bytes, little-endian: exactly what follows ``C3 01`` in Avro's single-object
    encoding (the Java implementation's byte order).
    """
    raw = json.loads(schema) if isinstance(schema, str) else schema
    canonical = to_parsing_canonical_form(_plain(raw, drop=_FASTAVRO_KEYS))
    return bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO"))


def known_schemas(schemas_dir: Path | None = None) -> dict[bytes, Schema]:
    """Every ``.avsc`` under ``schemas_dir`` (recursively, history included) by fingerprint.

    Raises ``ConfigError`` when a file is not a valid record schema: a broken schema in
    the repository is a deployment mistake, not something to skip silently.
    """
    return dict(_known_schemas((schemas_dir or SCHEMAS_DIR).resolve()))


def without_logical_types(schema: Schema) -> Schema:
    """The same schema with every ``logicalType`` removed, parsed.

    Decoding with it keeps values in their Avro primitive form: ``timestamp-millis`` stays
    an ``int`` of epoch milliseconds instead of a ``datetime`` (which costs about as much
    as decoding the rest of the event), and encoding expects ints.
    """
    return parse(_plain(schema, drop=_FASTAVRO_KEYS, logical=False))


def schema_json(schema: Schema) -> str:
    """The schema as JSON text, with docs and defaults (for registering it in a registry)."""
    return json.dumps(_plain(schema, drop=_FASTAVRO_KEYS), separators=(",", ":"))


@lru_cache(maxsize=256)
def _load_file(path: Path) -> Schema:
    try:
        return parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read Avro schema {path}: {exc.strerror}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        # fastavro's SchemaParseException is a ValueError subclass.
        raise ConfigError(f"invalid Avro schema in {path}: {exc}") from exc


@lru_cache(maxsize=16)
def _known_schemas(schemas_dir: Path) -> dict[bytes, Schema]:
    if not schemas_dir.is_dir():
        raise ConfigError(f"schema directory {schemas_dir} does not exist (STREAMER_SCHEMAS_DIR)")
    return {fingerprint(s): s for s in map(_load_file, sorted(schemas_dir.rglob("*.avsc")))}


def _plain(node: Any, *, drop: frozenset[str], logical: bool = True) -> Any:
    """Deep copy of a JSON-like schema without the ``drop`` keys (and logical types)."""
    if isinstance(node, list):
        return [_plain(v, drop=drop, logical=logical) for v in node]
    if not isinstance(node, dict):
        return node
    if not logical and "logicalType" in node and node["type"] in _PRIMITIVES:
        return node["type"]  # {"type": "long", "logicalType": ...} becomes plain "long"
    return {
        k: _plain(v, drop=drop, logical=logical)
        for k, v in node.items()
        if k not in drop and (logical or k != "logicalType")
    }


# --- diagnosing bytes that fastavro refused -------------------------------------------
# fastavro's errors do not say whether the bytes ran out (IndexError inside a varint,
# EOFError for a negative length...). This slow walker runs only after a failure, to name
# the problem precisely for the dead-letter headers: which field, which byte offset.

_MAX_VARINT_BYTES = {"int": 5, "long": 10}
_FIXED_WIDTH = {"null": 0, "float": 4, "double": 8}


class _InvalidError(Exception):
    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def diagnose(schema: Schema, data: bytes, start: int = 0) -> tuple[str, str] | None:
    """Why ``data[start:]`` does not begin with a datum of ``schema`` (the writer schema).

    Returns ``("Truncated", message)`` when the bytes end inside the datum,
    ``("NotAvro", message)`` when they cannot be Avro binary of this schema (invalid
    varint, union or enum index, negative length, bad UTF-8), or ``None`` when a datum
    reads cleanly. Messages name the field and byte offset, never the field values.
    """
    scanner = _Scanner(data, start, schema.get("__named_schemas", {}))
    try:
        scanner.datum(schema, str(schema.get("name", "record")).rsplit(".", 1)[-1])
    except _InvalidError as exc:
        return exc.error_class, str(exc)
    except RecursionError:
        return "NotAvro", "nesting too deep for the schema"
    return None


class _Scanner:
    def __init__(self, data: bytes, pos: int, named: dict[str, Any]) -> None:
        self.data, self.pos, self.named = data, pos, named

    def take(self, n: int, where: str) -> bytes:
        if n < 0:
            raise _InvalidError("NotAvro", f"negative length {n} in {where} at byte {self.pos}")
        end = self.pos + n
        if end > len(self.data):
            raise _InvalidError(
                "Truncated", f"payload ends at byte {len(self.data)} inside {where}"
            )
        chunk, self.pos = self.data[self.pos : end], end
        return chunk

    def varint(self, where: str, kind: str = "long") -> int:
        start, shift, acc = self.pos, 0, 0
        for _ in range(_MAX_VARINT_BYTES[kind]):
            byte = self.take(1, where)[0]
            acc |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (acc >> 1) ^ -(acc & 1)
            shift += 7
        raise _InvalidError(
            "NotAvro", f"{kind} varint longer than allowed in {where} at byte {start}"
        )

    def datum(self, schema: Any, where: str) -> None:
        if isinstance(schema, list):
            index = self.varint(where)
            if not 0 <= index < len(schema):
                raise _InvalidError("NotAvro", f"union index {index} out of range in {where}")
            self.datum(schema[index], where)
            return
        kind = schema["type"] if isinstance(schema, dict) else schema
        if isinstance(kind, (dict, list)):
            self.datum(kind, where)
        elif kind in _FIXED_WIDTH:
            self.take(_FIXED_WIDTH[kind], where)
        elif kind in ("int", "long"):
            self.varint(where, kind)
        elif kind in _READERS:
            _READERS[kind](self, schema, where)
        else:  # a reference to a named type defined earlier in the schema
            self.datum(self.named[kind], where)

    def boolean(self, _schema: Any, where: str) -> None:
        if self.take(1, where)[0] > 1:
            raise _InvalidError("NotAvro", f"boolean byte other than 0 or 1 in {where}")

    def string(self, schema: Any, where: str) -> None:
        chunk = self.take(self.varint(where), where)
        if schema == "string" or (isinstance(schema, dict) and schema["type"] == "string"):
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _InvalidError("NotAvro", f"invalid UTF-8 in {where}") from exc

    def fixed(self, schema: Schema, where: str) -> None:
        self.take(schema["size"], where)

    def enum(self, schema: Schema, where: str) -> None:
        index = self.varint(where, "int")
        if not 0 <= index < len(schema["symbols"]):
            raise _InvalidError("NotAvro", f"enum index {index} out of range in {where}")

    def record(self, schema: Schema, where: str) -> None:
        for field in schema["fields"]:
            self.datum(field["type"], f"{where}.{field['name']}")

    def blocks(self, schema: Schema, where: str) -> None:
        while count := self.varint(where):
            if count < 0:  # a negative count is followed by the block's size in bytes
                count = -count
                self.varint(where)
            # Every item takes at least one byte unless its type is empty (null): a count
            # beyond the remaining bytes means the payload was cut, not a huge array.
            if count > len(self.data) - self.pos and schema.get("items", "") != "null":
                raise _InvalidError("Truncated", f"payload ends inside {where} ({count} items)")
            for i in range(count):
                if schema["type"] == "map":
                    self.datum("string", f"{where}[key {i}]")
                self.datum(schema.get("items", schema.get("values")), f"{where}[{i}]")


_READERS: dict[str, Callable[[_Scanner, Any, str], None]] = {
    "boolean": _Scanner.boolean,
    "bytes": _Scanner.string,
    "string": _Scanner.string,
    "fixed": _Scanner.fixed,
    "enum": _Scanner.enum,
    "record": _Scanner.record,
    "array": _Scanner.blocks,
    "map": _Scanner.blocks,
}
