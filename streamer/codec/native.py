"""The C codec (``_native.c``) in front of the generated Python one, where it applies.

The generated Python codecs cost about 10 µs per event each way, half the stream's CPU
after librdkafka; the same walk in C costs well under one. ``_native`` is a small C
extension built when streamer is installed (any C compiler; ``pip`` builds it, and the
Python codec is used alone where it could not be built). It takes a *spec* of the schema,
nested tuples with integer kinds that ``spec()`` writes:

- ``(kind,)`` for a primitive; ``(FIXED, size)``; ``(ENUM, symbols)``;
- ``(ARRAY, items)``, ``(MAP, values)``, ``(UNION, branches)``;
- ``(RECORD, field names, field specs, flags)``, a flag true where the generated encoder
  reads a missing field as ``None`` (a union without a default).

The C code handles plain valid data only and hands everything else (bytes that are not a
datum, a value of an unusual type, a NaN, a number out of range) to the generated function
it wraps, which alone decides every edge case; so both agree by construction wherever the
C code answers, which ``tests/unit/test_native_codec.py`` checks on generated and fuzzed
data. It decodes only a writer schema read as itself (the current schema, the hot path);
Avro resolution (older writer schemas) stays with the generated decoder. A record
decoder also decodes a whole batch into columns, a list per field, or declines the batch
(``decode_columns``, behind ``wire.Decoder.decode_columns``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from streamer.codec.resolution import PRIMITIVES, Resolver, kind

try:
    from streamer.codec import _native  # type: ignore[attr-defined]
except ImportError:  # not built (no C compiler at install): the generated codec alone
    _native = None

_KIND_NAMES = (
    *("null", "boolean", "int", "long", "float", "double", "bytes", "string"),
    *("fixed", "enum", "record", "array", "map", "union"),
)
KINDS = {name: code for code, name in enumerate(_KIND_NAMES)}
"""The integer kinds of a spec, in the order of ``_native.c``'s enum."""
Spec = tuple[Any, ...]
F = TypeVar("F", bound=Callable[..., Any])


class UnsupportedSchemaError(Exception):
    """A schema the C codec does not take (recursive, or an ``error`` type)."""


def available() -> bool:
    """Whether the C extension was built and imports."""
    return _native is not None


def spec(schema: dict[str, Any], *, encoder: bool = False) -> tuple[Spec, list[str]]:
    """The C spec of ``schema`` (parsed, logical types off) and its named types' full names.

    Raises ``UnsupportedSchemaError`` for what the C codec does not take.
    """
    names = Resolver(schema, schema)
    named: list[str] = []

    def walk(node: Any, path: frozenset[int]) -> Spec:
        node = names.w(node)
        node_kind = kind(node)
        if node_kind in PRIMITIVES:
            return (KINDS[node_kind],)
        if node_kind == "union":
            return (KINDS["union"], tuple(walk(branch, path) for branch in node))
        if node_kind == "array":
            return (KINDS["array"], walk(node["items"], path))
        if node_kind == "map":
            return (KINDS["map"], walk(node["values"], path))
        if node_kind not in ("fixed", "enum", "record"):
            raise UnsupportedSchemaError(f"type {node_kind}")
        named.append(str(node["name"]))
        if node_kind == "fixed":
            return (KINDS["fixed"], int(node["size"]))
        if node_kind == "enum":
            return (KINDS["enum"], tuple(node["symbols"]))
        if id(node) in path:
            raise UnsupportedSchemaError(f"recursive record {node['name']}")
        inner = path | {id(node)}
        fields = node["fields"]
        return (
            KINDS["record"],
            tuple(field["name"] for field in fields),
            tuple(walk(field["type"], inner) for field in fields),
            tuple(
                encoder and "default" not in field and kind(names.w(field["type"])) == "union"
                for field in fields
            ),
        )

    return walk(schema, frozenset()), named


def decoder(writer: dict[str, Any], reader: dict[str, Any], generated: F) -> F:
    """``generated`` (``decode(data, pos)``) behind the C decoder, where it applies."""
    if _native is None:
        return generated
    try:
        written, reading = spec(writer), spec(reader)
    except UnsupportedSchemaError:
        return generated
    if written != reading:  # Avro resolution: the generated decoder's job
        return generated
    return _native.decoder(written[0], generated)  # type: ignore[no-any-return]


def encoder(schema: dict[str, Any], generated: F) -> F:
    """``generated`` (``encode(record, header)``) behind the C encoder, where it applies."""
    if _native is None:
        return generated
    try:
        schema_spec, _ = spec(schema, encoder=True)
    except UnsupportedSchemaError:
        return generated
    return _native.encoder(schema_spec, generated)  # type: ignore[no-any-return]


__all__ = ["KINDS", "UnsupportedSchemaError", "available", "decoder", "encoder", "spec"]
