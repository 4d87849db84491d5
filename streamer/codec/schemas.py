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
    os.environ.get("STREAMER_SCHEMAS_DIR") or Path(__file__).resolve().parents[2] / "schemas"
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
