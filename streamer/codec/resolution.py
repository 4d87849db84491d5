"""Avro schema resolution: which reader type reads which writer type.

Pure functions over fastavro-parsed schemas (named types defined once, referred to by full
name afterwards). The rules follow the Avro specification and, where it leaves room,
fastavro's choices, so that the generated decoders resolve exactly as fastavro does:
named types match by unqualified name or a reader alias, numbers promote
int → long → float → double, strings and bytes read as each other, and a writer type read
into a reader union takes the first branch that matches.
"""

from __future__ import annotations

from typing import Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "enum", "fixed", "error"})
PROMOTIONS = frozenset(
    {
        *(("int", "long"), ("int", "float"), ("int", "double")),
        *(("long", "float"), ("long", "double"), ("float", "double")),
        *(("string", "bytes"), ("bytes", "string")),
    }
)


class Named:
    """The named types of one schema, to turn a reference (a full name) into its schema."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._named: dict[str, Any] = dict(schema.get("__named_schemas", {}))
        self._named.setdefault(str(schema.get("name")), schema)

    def deref(self, schema: Any) -> Any:
        """``schema`` itself, or the named schema it refers to."""
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return self._named[schema]
        return schema


def kind(schema: Any) -> str:
    """``union``, a primitive name, or the ``type`` of a complex schema (dereferenced)."""
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        inner = schema["type"]
        return kind(inner) if isinstance(inner, (dict, list)) else str(inner)
    return str(schema)


def unwrap(schema: Any) -> Any:
    """``{"type": "string"}`` as ``"string"``; other schemas unchanged."""
    while isinstance(schema, dict) and isinstance(schema["type"], (dict, list)):
        schema = schema["type"]
    if isinstance(schema, dict) and schema["type"] in PRIMITIVES:
        return schema["type"]
    return schema


def short_name(schema: dict[str, Any]) -> str:
    return str(schema["name"]).rsplit(".", 1)[-1]


class Resolver:
    """Matches writer types to reader types, both dereferenced through their own names."""

    def __init__(self, writer: dict[str, Any], reader: dict[str, Any]) -> None:
        self.writer_names, self.reader_names = Named(writer), Named(reader)

    def w(self, schema: Any) -> Any:
        return unwrap(self.writer_names.deref(unwrap(schema)))

    def r(self, schema: Any) -> Any:
        return unwrap(self.reader_names.deref(unwrap(schema)))

    def matches(self, writer: Any, reader: Any) -> bool:
        """Whether a datum of ``writer`` (not a union) can be read as ``reader``."""
        writer, reader = self.w(writer), self.r(reader)
        w_kind, r_kind = kind(writer), kind(reader)
        if "union" in (w_kind, r_kind):
            return True  # decided branch by branch when reading (fastavro does the same)
        if w_kind in PRIMITIVES or r_kind in PRIMITIVES:
            return w_kind == r_kind or (w_kind, r_kind) in PROMOTIONS
        if w_kind != r_kind:
            return False
        if w_kind == "array":
            return self.matches(writer["items"], reader["items"])
        if w_kind == "map":
            return self.matches(writer["values"], reader["values"])
        if w_kind == "fixed" and writer["size"] != reader["size"]:
            return False
        aliases = reader.get("aliases", [])
        return short_name(writer) == short_name(reader) or (
            writer["name"] in aliases or short_name(writer) in aliases
        )

    def branch(self, writer: Any, reader_union: list[Any]) -> Any | None:
        """The first branch of ``reader_union`` that reads ``writer``, or ``None``."""
        for candidate in reader_union:
            if self.matches(writer, candidate):
                return self.r(candidate)
        return None
