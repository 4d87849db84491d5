"""Compiling and caching the specialised codecs.

``reader_for(writer, reader)`` and ``encoder_for(schema)`` turn the source written by
``decoder_gen.py`` / ``encoder_gen.py`` into functions with ``compile()``, once per schema
pair (cached by the schemas' full JSON, defaults and aliases included, since they change
the result). The source is kept on the function (``__source__``) for whoever debugs it. Where the C
codec applies (``native.py``), it is returned in front of the generated function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from functools import lru_cache
from typing import Any

from streamer.codec import native, runtime
from streamer.codec.decoder_gen import DecoderSource
from streamer.codec.encoder_gen import EncoderSource
from streamer.codec.schemas import Schema, schema_json

ReadFn = Callable[[bytes, int], tuple[dict[str, Any], int]]
"""``read(data, pos) -> (record, next_pos)``; raises for bytes that are not a datum."""
EncodeFn = Callable[[Mapping[str, Any], bytes], bytes]
"""``encode(record, header) -> header + the record's Avro binary``."""

_RUNTIME = {
    "deepcopy": deepcopy,
    "Mapping": Mapping,
    **{name: getattr(runtime, name) for name in dir(runtime) if not name.startswith("_")},
}


def reader_for(writer: Schema, reader: Schema) -> ReadFn:
    """The decoder of ``writer`` datums resolved to ``reader`` (parsed, logical types off)."""
    return _reader(schema_json(writer), schema_json(reader), _Key(writer), _Key(reader))


def encoder_for(schema: Schema) -> EncodeFn:
    """The encoder of ``schema`` records (parsed, logical types off)."""
    return _encoder(schema_json(schema), _Key(schema))


class _Key:
    """Carries a parsed schema through ``lru_cache`` without taking part in the key."""

    __slots__ = ("schema",)

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key)


@lru_cache(maxsize=256)
def _reader(_writer_json: str, _reader_json: str, writer: _Key, reader: _Key) -> ReadFn:
    generator = DecoderSource(writer.schema, reader.schema)
    source = generator.source()
    name = f"<avro decoder {writer.schema['name']} -> {reader.schema['name']}>"
    function: ReadFn = _compile(source, name, generator.constants)["decode"]
    return native.decoder(writer.schema, reader.schema, function)


@lru_cache(maxsize=64)
def _encoder(_schema_json: str, schema: _Key) -> EncodeFn:
    generator = EncoderSource(schema.schema)
    source = generator.source()
    name = f"<avro encoder {schema.schema['name']}>"
    function: EncodeFn = _compile(source, name, generator.constants)["encode"]
    return native.encoder(schema.schema, function)


def _compile(source: str, filename: str, constants: dict[str, Any]) -> dict[str, Any]:
    namespace: dict[str, Any] = {**_RUNTIME, **constants}
    exec(compile(source, filename, "exec"), namespace)  # our own generated code
    for value in namespace.values():
        code = getattr(value, "__code__", None)
        if code is not None and code.co_filename == filename:
            value.__source__ = source
    return namespace


def source_of(function: Callable[..., Any]) -> str:
    """The generated source of a codec function (for debugging and tests)."""
    generated = getattr(function, "fallback", function)  # the C codec in front of it
    return str(getattr(generated, "__source__", ""))


__all__ = ["EncodeFn", "ReadFn", "encoder_for", "reader_for", "source_of"]
