"""Python source for an encoder specialised to one schema.

Like ``decoder_gen.py``: the schema is walked once, to write a straight-line function
``encode(record, header) -> bytes`` that appends each field's bytes to a list and joins
them (nested records get functions of their own). Values follow fastavro's conventions
for what fits a type, with timestamps as int epoch millis; a value that does not fit
raises ``TypeError``/``ValueError`` (``codegen.encoder_for`` normalises the others).
"""

from __future__ import annotations

from typing import Any

from streamer.codec.resolution import Resolver, kind, short_name
from streamer.codec.runtime import write_long
from streamer.codec.source import SourceWriter

_CHECKS = {
    "null": "{v} is None",
    "boolean": "{v}.__class__ is bool",
    "int": "isinstance({v}, int) and {v}.__class__ is not bool",
    "long": "isinstance({v}, int) and {v}.__class__ is not bool",
    "float": "isinstance({v}, (int, float)) and {v}.__class__ is not bool",
    "double": "isinstance({v}, (int, float)) and {v}.__class__ is not bool",
    "string": "isinstance({v}, str)",
    "bytes": "isinstance({v}, (bytes, bytearray))",
    "record": "isinstance({v}, Mapping)",
    "map": "isinstance({v}, Mapping)",
    "array": "isinstance({v}, (list, tuple))",
}
"""How a union picks its branch for a value: the first branch whose check holds."""


class EncoderSource(SourceWriter):
    """Writes the encoder of ``schema``; see ``source()``."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._names = Resolver(schema, schema)
        self._schema = schema
        super().__init__()
        self._functions: dict[int, str] = {}
        self._pending: list[tuple[str, dict[str, Any]]] = []

    def source(self) -> str:
        """Module source defining ``encode(record, header) -> bytes``."""
        self._functions[id(self._schema)] = "encode"
        self._emit_record("encode", self._schema)  # the top record inline: one call less
        while self._pending:
            self._emit_record(*self._pending.pop())
        return "\n".join(self._lines)

    def _record_function(self, schema: dict[str, Any]) -> str:
        if id(schema) not in self._functions:
            name = self._functions[id(schema)] = self._name(f"_{short_name(schema)}_")
            self._pending.append((name, schema))
        return self._functions[id(schema)]

    def _emit_record(self, name: str, schema: dict[str, Any]) -> None:
        out = [f"def {name}(record, append):"]
        if name == "encode":
            out = [
                f"def {name}(record, header):",
                "    parts = [header]",
                "    append = parts.append",
            ]
        for field in schema["fields"]:
            var, key = self._name("v"), field["name"]
            if "default" in field:
                out.append(f"    {var} = record.get({key!r}, {self._constant(field['default'])})")
            elif kind(self._names.w(field["type"])) == "union":
                out.append(f"    {var} = record.get({key!r})")
            else:
                out.append(f"    {var} = record[{key!r}]")
            self._write(out, "    ", field["type"], var)
        if name == "encode":
            out.append("    return b''.join(parts)")
        self._lines += [*out, ""]

    def _write(self, out: list[str], ind: str, schema: Any, var: str) -> None:
        schema = self._names.w(schema)
        getattr(self, f"_{kind(schema)}")(out, ind, schema, var)

    def _null(self, out: list[str], ind: str, _schema: Any, _var: str) -> None:
        out.append(f"{ind}pass")

    def _boolean(self, out: list[str], ind: str, _schema: Any, var: str) -> None:
        out.append(f"{ind}append(b'\\x01' if {var} else b'\\x00')")

    def _int(self, out: list[str], ind: str, _schema: Any, var: str) -> None:
        out.append(f"{ind}append(write_int({var}))")

    def _long(self, out: list[str], ind: str, _schema: Any, var: str) -> None:
        out.append(f"{ind}append(write_long({var}))")

    def _float(self, out: list[str], ind: str, _schema: Any, var: str) -> None:
        out.append(f"{ind}append(pack_float({var}))")

    def _double(self, out: list[str], ind: str, _schema: Any, var: str) -> None:
        out.append(f"{ind}append(pack_double({var}))")

    def _string(self, out: list[str], ind: str, _schema: Any, var: str) -> None:
        out += [
            f"{ind}{var} = {var}.encode()",
            f"{ind}n = len({var})",
            f"{ind}append(LENGTHS[n] if n < 64 else write_length(n))",
            f"{ind}append({var})",
        ]

    def _bytes(self, out: list[str], ind: str, _schema: Any, var: str) -> None:
        out += [f"{ind}append(write_length(len({var})))", f"{ind}append(bytes({var}))"]

    def _fixed(self, out: list[str], ind: str, schema: Any, var: str) -> None:
        size = int(schema["size"])
        message = f"fixed {short_name(schema)} takes exactly {size} bytes"
        out += [
            f"{ind}if len({var}) != {size}:",
            f"{ind}    raise ValueError({message!r})",
            f"{ind}append(bytes({var}))",
        ]

    def _enum(self, out: list[str], ind: str, schema: Any, var: str) -> None:
        table = {s: write_long(i) for i, s in enumerate(schema["symbols"])}
        out.append(f"{ind}append({self._constant(table)}[{var}])")  # KeyError: not a symbol

    def _record(self, out: list[str], ind: str, schema: Any, var: str) -> None:
        function = self._record_function(schema)
        if function == "encode":  # a recursive schema: the top record nested in itself
            out.append(f"{ind}append(encode({var}, b''))")
        else:
            out.append(f"{ind}{function}({var}, append)")

    def _array(self, out: list[str], ind: str, schema: Any, var: str) -> None:
        item = self._name("x")
        out += [f"{ind}if {var}:", f"{ind}    append(write_length(len({var})))"]
        out.append(f"{ind}    for {item} in {var}:")
        self._write(out, ind + "        ", schema["items"], item)
        out.append(f"{ind}append(b'\\x00')")

    def _map(self, out: list[str], ind: str, schema: Any, var: str) -> None:
        key, value = self._name("k"), self._name("x")
        out += [f"{ind}if {var}:", f"{ind}    append(write_length(len({var})))"]
        out.append(f"{ind}    for {key}, {value} in {var}.items():")
        self._string(out, ind + "        ", "string", key)
        self._write(out, ind + "        ", schema["values"], value)
        out.append(f"{ind}append(b'\\x00')")

    def _union(self, out: list[str], ind: str, schema: list[Any], var: str) -> None:
        for i, written in enumerate(schema):
            branch = self._names.w(written)
            branch_kind = kind(branch)
            if branch_kind == "enum":
                check = f"{var} in {self._constant(frozenset(branch['symbols']))}"
            elif branch_kind == "fixed":
                check = f"isinstance({var}, bytes) and len({var}) == {int(branch['size'])}"
            else:
                check = _CHECKS[branch_kind].format(v=var)
            out.append(f"{ind}{'if' if i == 0 else 'elif'} {check}:")
            out.append(f"{ind}    append({write_long(i)!r})")
            self._write(out, ind + "    ", branch, var)
        message = f"value fits no branch of the union {[kind(self._names.w(b)) for b in schema]}"
        out += [f"{ind}else:", f"{ind}    raise TypeError({message!r})"]
