"""Generated-source lines that read one primitive Avro datum, for ``decoder_gen``.

The leaves of the decoder's schema walk: varints (with a table for the one-byte values that
are nearly all of them), fixed-width floats, and length-prefixed bytes and strings. Each
method appends lines at indentation ``ind`` that read from ``data`` at ``pos`` into
``var`` and advance ``pos``; the schema walk (records, unions, resolution) is
``DecoderSource``'s. The unused ``_w``/``_r`` parameters keep one signature for every type,
so the walk dispatches on the type's name.
"""

from __future__ import annotations

from typing import Any

from streamer.codec.source import SourceWriter


class PrimitiveReaders(SourceWriter):
    """Lines reading null, boolean, int, long, float, double, bytes, string and fixed."""

    def _varint(self, out: list[str], ind: str, var: str, helper: str = "read_long") -> None:
        table = "SMALL_LENGTHS" if helper == "read_length" else "SMALL_VALUES"
        test = f"{var} < 0" if helper == "read_length" else f"{var} is None"
        out += [
            f"{ind}{var} = {table}[data[pos]]",
            f"{ind}if {test}:",
            f"{ind}    {var}, pos = {helper}(data, pos)",
            f"{ind}else:",
            f"{ind}    pos += 1",
        ]

    def _null(self, out: list[str], ind: str, _w: Any, _r: Any, var: str) -> None:
        out.append(f"{ind}{var} = None")

    def _boolean(self, out: list[str], ind: str, _w: Any, _r: Any, var: str) -> None:
        out += [f"{ind}{var} = BOOLEANS[data[pos]]", f"{ind}pos += 1"]

    def _int(self, out: list[str], ind: str, _w: Any, _r: Any, var: str) -> None:
        self._varint(out, ind, var, "read_int")

    def _long(self, out: list[str], ind: str, _w: Any, _r: Any, var: str) -> None:
        self._varint(out, ind, var)

    def _float(self, out: list[str], ind: str, _w: Any, _r: Any, var: str) -> None:
        out += [f"{ind}{var} = unpack_float(data, pos)[0]", f"{ind}pos += 4"]

    def _double(self, out: list[str], ind: str, _w: Any, _r: Any, var: str) -> None:
        out += [f"{ind}{var} = unpack_double(data, pos)[0]", f"{ind}pos += 8"]

    def _take(self, out: list[str], ind: str, var: str, length: str, then: str = "") -> None:
        # No bounds check: a slice past the end is short, and ``pos`` then ends beyond the
        # payload, which the caller checks once (lengths are never negative, so ``pos``
        # only grows).
        out += [
            f"{ind}end = pos + {length}",
            f"{ind}{var} = data[pos:end]{then}",
            f"{ind}pos = end",
        ]

    def _bytes(self, out: list[str], ind: str, _w: Any, _r: Any, var: str) -> None:
        self._varint(out, ind, var, "read_length")
        self._take(out, ind, var, var)

    def _string(self, out: list[str], ind: str, _w: Any, _r: Any, var: str) -> None:
        self._varint(out, ind, var, "read_length")
        self._take(out, ind, var, var, ".decode()")

    def _fixed(self, out: list[str], ind: str, w: Any, _r: Any, var: str) -> None:
        self._take(out, ind, var, str(int(w["size"])))
