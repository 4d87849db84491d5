"""Why bytes that fastavro refused are not a datum of their writer schema.

fastavro's errors do not say whether the bytes ran out (IndexError inside a varint,
EOFError for a negative length...). This slow walker runs only after a failure, to name
the problem precisely for the dead-letter headers: which field, which byte offset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamer.codec.schemas import Schema

_MAX_VARINT_BYTES = {"int": 5, "long": 10}
_VALUE_BITS = {"int": 32, "long": 64}  # a 5-byte int can carry 35 bits: more is invalid
_FIXED_WIDTH = {"null": 0, "float": 4, "double": 8}


class _InvalidError(Exception):
    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def diagnose(schema: Schema, data: bytes, start: int = 0) -> tuple[str, str] | None:
    """Why ``data[start:]`` does not begin with a datum of ``schema`` (the writer schema).

    Returns ``("Truncated", message)`` when the bytes end inside the datum,
    ``("NotAvro", message)`` when they cannot be Avro binary of this schema (a varint too
    long or out of range, a union or enum index out of range, a boolean byte other than 0
    or 1, a negative length, bad UTF-8), or ``None`` when a datum
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
                if acc >> _VALUE_BITS[kind]:
                    raise _InvalidError(
                        "NotAvro", f"{kind} varint out of range in {where} at byte {start}"
                    )
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
            size = -1
            if count < 0:  # a negative count is followed by the block's size in bytes
                count = -count
                size = self.varint(where)
            # Every item takes at least one byte unless its type is empty (null): a count
            # beyond the remaining bytes means the payload was cut, not a huge array.
            if count > len(self.data) - self.pos and schema.get("items", "") != "null":
                raise _InvalidError("Truncated", f"payload ends inside {where} ({count} items)")
            start = self.pos
            for i in range(count):
                if schema["type"] == "map":
                    self.datum("string", f"{where}[key {i}]")
                self.datum(schema.get("items", schema.get("values")), f"{where}[{i}]")
            # A reader that skips the block by its size would land elsewhere than one that
            # reads its items: the bytes mean two things, so they are not Avro.
            if size >= 0 and size != self.pos - start:
                raise _InvalidError(
                    "NotAvro", f"block size {size} in {where}, its items take {self.pos - start}"
                )


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
