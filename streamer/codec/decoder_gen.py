"""Python source for a decoder specialised to one (writer, reader) schema pair.

fastavro walks the schema for every datum: a dispatch per field, a resolution check per
field, a dict lookup per enum. Here the walk happens once, when the pair is first seen:
it writes a straight-line function (one block per field, nested records as functions of
their own) that ``codegen.py`` compiles and caches. The function reads ``data`` from
``pos`` and returns ``(record, next_pos)``; it raises ``IncompatibleError`` when the datum
cannot be resolved, and some other exception for bytes that are not a valid datum (the
caller then asks ``diagnose`` which way they are wrong). What fastavro accepts silently
raises here: over-long varints, boolean bytes other than 0/1, negative or out-of-range enum
and union indexes, invalid UTF-8.
"""

from __future__ import annotations

from typing import Any

from streamer.codec.primitive_readers import PrimitiveReaders
from streamer.codec.resolution import Resolver, kind, short_name

_SCALARS = (str, int, float, bool, type(None))


class DecoderSource(PrimitiveReaders):
    """Writes the decoder of ``writer`` resolved to ``reader``; see ``source()``."""

    def __init__(self, writer: dict[str, Any], reader: dict[str, Any]) -> None:
        self._resolver = Resolver(writer, reader)
        self._writer, self._reader = writer, reader
        super().__init__()
        self._functions: dict[tuple[int, int], str] = {}
        self._pending: list[tuple[str, Any, Any]] = []

    def source(self) -> str:
        """Module source defining ``decode(data, pos) -> (record, pos)``."""
        self._lines = ["def decode(data, pos):"]
        if self._resolver.matches(self._writer, self._reader):
            top = self._record_function(self._writer, self._reader)
            self._lines = []  # the top record's function is ``decode`` itself: one call less
            while self._pending:
                self._emit_record(*self._pending.pop())
            return "\n".join([*self._lines, f"decode = {top}", ""])
        message = f"writer {self._writer['name']} cannot be read as {self._reader['name']}"
        return "\n".join([*self._lines, f"    raise IncompatibleError({message!r})", ""])

    def _record_function(self, writer: Any, reader: Any | None) -> str:
        key = (id(writer), id(reader))
        if key not in self._functions:
            name = self._functions[key] = self._name(f"_{short_name(writer)}_")
            self._pending.append((name, writer, reader))
        return self._functions[key]

    def _emit_record(self, name: str, writer: dict[str, Any], reader: Any | None) -> None:
        out = [f"def {name}(data, pos):"]
        if reader is None:  # a writer-only record: read (to validate it) and drop
            for field in writer["fields"]:
                self._read(out, "    ", field["type"], None, self._name("v"))
            self._lines += [*out, "    return None, pos", ""]
            return
        by_name = {f["name"]: f for f in reader["fields"]}
        for field in reader["fields"]:
            by_name.update(dict.fromkeys(field.get("aliases", []), field))
        items: list[str] = []
        for field in writer["fields"]:
            target = by_name.pop(field["name"], None)
            var = self._name("v")
            self._read(out, "    ", field["type"], target["type"] if target else None, var)
            if target is not None:
                by_name = {k: f for k, f in by_name.items() if f is not target}
                items.append(f"{target['name']!r}: {var}")
        for field in {id(f): f for f in by_name.values()}.values():
            if "default" not in field:
                message = f"no default value for field {field['name']} in {short_name(reader)}"
                out.insert(1, f"    raise IncompatibleError({message!r})")
            items.append(f"{field['name']!r}: {self._default(field['default'])}")
        out += ["    return {" + ", ".join(items) + "}, pos", ""]
        self._lines += out

    def _default(self, value: Any) -> str:
        if isinstance(value, _SCALARS) and value == value:  # noqa: PLR0124 - NaN has no repr
            return repr(value)
        return f"deepcopy({self._constant(value)})"

    def _read(self, out: list[str], ind: str, writer: Any, reader: Any, var: str) -> None:
        """Lines reading a ``writer`` datum into ``var`` as ``reader``.

        ``reader`` None: a writer-only value, read as the writer wrote it (to check it) and
        dropped by the caller.
        """
        res = self._resolver
        writer = res.w(writer)
        if reader is None:
            getattr(self, f"_{kind(writer)}")(out, ind, writer, None, var)
            return
        reader = res.r(reader)
        if kind(writer) == "union":
            self._union(out, ind, writer, reader, var)
            return
        if kind(reader) == "union":
            branch = res.branch(writer, reader)
            if branch is None:
                message = f"writer type {kind(writer)} is not in the reader's union"
                out.append(f"{ind}raise IncompatibleError({message!r})")
                return
            reader = branch
        if not res.matches(writer, reader):
            message = f"writer type {kind(writer)} cannot be read as {kind(reader)}"
            out.append(f"{ind}raise IncompatibleError({message!r})")
            return
        getattr(self, f"_{kind(writer)}")(out, ind, writer, reader, var)
        promoted = (kind(writer), kind(reader))
        if promoted[0] in ("int", "long") and promoted[1] in ("float", "double"):
            out.append(f"{ind}{var} = float({var})")
        elif promoted == ("string", "bytes"):
            out.append(f"{ind}{var} = {var}.encode()")
        elif promoted == ("bytes", "string"):
            out.append(f"{ind}{var} = {var}.decode()")

    def _union(self, out: list[str], ind: str, writer: list[Any], reader: Any, var: str) -> None:
        index = self._name("i")
        self._varint(out, ind, index)
        for i, branch in enumerate(writer):
            out.append(f"{ind}{'if' if i == 0 else 'elif'} {index} == {i}:")
            target = reader
            if reader is not None and kind(reader) == "union":
                target = self._resolver.branch(self._resolver.w(branch), reader)
                if target is None:
                    message = f"writer union branch {i} is not in the reader's union"
                    out.append(f"{ind}    raise IncompatibleError({message!r})")
                    continue
            self._read(out, ind + "    ", branch, target, var)
        out += [f"{ind}else:", f"{ind}    raise InvalidAvroError('union index out of range')"]

    def _enum(self, out: list[str], ind: str, w: Any, r: Any, var: str) -> None:
        r = r or w
        symbols = r["symbols"]
        default = r.get("default")
        table = {
            i: s if s in symbols else default  # fastavro: a falsy default is no default
            for i, s in enumerate(w["symbols"])
        }
        self._varint(out, ind, var, "read_int")
        out.append(f"{ind}{var} = {self._constant(table)}[{var}]")  # KeyError if out of range
        if None in table.values():
            message = f"enum symbol not among the symbols of reader enum {short_name(r)}"
            out += [f"{ind}if {var} is None:", f"{ind}    raise IncompatibleError({message!r})"]

    def _record(self, out: list[str], ind: str, w: Any, r: Any, var: str) -> None:
        out.append(f"{ind}{var}, pos = {self._record_function(w, r)}(data, pos)")

    def _array(self, out: list[str], ind: str, w: Any, r: Any, var: str) -> None:
        item = self._name("x")
        end = self._blocks(out, ind, var, "[]", kind(self._resolver.w(w["items"])) != "null")
        self._read(out, ind + "        ", w["items"], r and r["items"], item)
        out.append(f"{ind}        {var}.append({item})")
        out += end

    def _map(self, out: list[str], ind: str, w: Any, r: Any, var: str) -> None:
        key, value = self._name("k"), self._name("x")
        end = self._blocks(out, ind, var, "{}", True)
        self._string(out, ind + "        ", "string", "string", key)
        self._read(out, ind + "        ", w["values"], r and r["values"], value)
        out.append(f"{ind}        {var}[{key}] = {value}")
        out += end

    def _blocks(self, out: list[str], ind: str, var: str, empty: str, check: bool) -> list[str]:
        """The block loop of an array or map; the item lines follow, indented 8 more, then
        the lines returned: a block with its size in bytes (a negative count) must take
        exactly that many (a reader skipping it by its size would land elsewhere)."""
        count, size, start = self._name("c"), self._name("s"), self._name("p")
        out.append(f"{ind}{var} = {empty}")
        out.append(f"{ind}while True:")
        self._varint(out, ind + "    ", count)
        out += [
            f"{ind}    if not {count}:",
            f"{ind}        break",
            f"{ind}    {size} = -1",
            f"{ind}    if {count} < 0:",
            f"{ind}        {count} = -{count}",
            f"{ind}        {size}, pos = read_long(data, pos)",
        ]
        if check:  # each item takes a byte at least: a bigger count means cut bytes
            out += [
                f"{ind}    if {count} > len(data) - pos:",
                f"{ind}        raise InvalidAvroError('more items than bytes left')",
            ]
        out.append(f"{ind}    {start} = pos")
        out.append(f"{ind}    for _ in range({count}):")
        return [
            f"{ind}    if {size} >= 0 and pos - {start} != {size}:",
            f"{ind}        raise InvalidAvroError('block size disagrees with its items')",
        ]
