"""Redis commands packed into one buffer (RESP2), for the stream's two big commands: the
feature read (one MGET of ~1,300 keys a 500-event batch) and the velocity write (one
EVALSHA of ~500 keys and states). Pure: no I/O.

The packers of redis-py and hiredis walk the arguments one by one (hiredis ~80 ns an
argument, so ~100 µs of CPU a batch for the MGET alone), and the keys must first be
built as strings, one per entity. Here a key is its prefix, its id and its suffix: each
argument's framing (``$<length>\\r\\n`` and the prefix) is made once per id length and
kept, and a command is one ``str.join`` of a list filled by slices, encoded once, so no
Python code runs per key (~35 µs for the MGET). The bytes are exactly those of
redis-py's ``Connection.pack_command`` for the same arguments (UTF-8, strict: an id that
is not valid Unicode text raises ``UnicodeEncodeError`` as redis-py's packer does); the
tests hold it to that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Blobs", "Keys", "pack"]

_CACHED_LENGTHS = 4096
"""How many distinct lengths a framing cache keeps (a state's length takes few values)."""


@dataclass(frozen=True, slots=True)
class Keys:
    """One argument per id: ``prefix + id + suffix``, each id a ``str``."""

    prefix: str
    ids: Sequence[str]
    suffix: str = ""

    def strings(self) -> list[str]:
        """The keys as strings, for a client that takes them so (an id that is not a
        ``str`` raises ``TypeError``, as it does in ``pack``)."""
        prefix, suffix = self.prefix, self.suffix
        return [prefix + key + suffix for key in self.ids]


@dataclass(frozen=True, slots=True)
class Blobs:
    """One argument per item, each item ``bytes`` sent as it is."""

    items: Sequence[bytes]


def pack(*args: str | bytes | int | Keys | Blobs) -> bytes:
    """The command of ``args`` (a ``Keys`` or ``Blobs`` stands for its items, in order) as
    one RESP2 buffer, byte for byte what redis-py's packer makes of the flat arguments."""
    count = 0
    parts: list[bytes] = []
    for arg in args:
        if isinstance(arg, Keys):
            parts.append(_keys(arg))
            count += len(arg.ids)
        elif isinstance(arg, Blobs):
            parts.append(_blobs(arg.items))
            count += len(arg.items)
        else:
            data = _scalar(arg)
            parts += (_BULK[len(data)], data, b"\r\n")
            count += 1
    return b"".join([b"*%d\r\n" % count, *parts])


def _blobs(items: Sequence[bytes]) -> bytes:
    """Each item framed (``$<length>\\r\\n`` … ``\\r\\n``), joined."""
    parts = [b"\r\n"] * (3 * len(items))
    parts[0::3] = map(_BULK.__getitem__, map(len, items))
    parts[1::3] = items
    return b"".join(parts)


def _scalar(arg: object) -> bytes:
    """One argument's bytes, as redis-py's encoder makes them (str as UTF-8, int as digits)."""
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, int) and not isinstance(arg, bool):
        return str(arg).encode()
    raise TypeError(f"cannot send a {type(arg).__name__} to Redis")


def _keys(keys: Keys) -> bytes:
    """The framed arguments of ``keys``: framed by character count when the whole text is
    ASCII (one check over it), else by each id's UTF-8 length."""
    framing, ids, tail = _framing(keys.prefix, keys.suffix), keys.ids, keys.suffix + "\r\n"
    if not ids:
        return b""
    if framing.ascii:
        text = _framed(framing, ids, list(map(len, ids)), tail)
        if text.isascii():
            return text.encode()
    lengths = [len(key.encode()) for key in ids]  # strict UTF-8, as redis-py encodes
    return _framed(framing, ids, lengths, tail).encode()


def _framed(framing: _Framing, ids: Sequence[str], lengths: list[int], tail: str) -> str:
    """Each id between its framing and ``tail``, joined: a list filled by slices (ids of
    one length, the common case, share one framing)."""
    n = len(ids)
    if lengths.count(lengths[0]) == n:
        parts = [framing[lengths[0]], "", tail] * n
    else:
        parts = [tail] * (3 * n)
        parts[0::3] = map(framing.__getitem__, lengths)
    parts[1::3] = ids
    return "".join(parts)


class _Framing(dict[int, str]):
    """``$<bytes of the key>\\r\\n<prefix>`` for an id of each byte length, made on first
    use (at most ``_CACHED_LENGTHS`` kept)."""

    def __init__(self, prefix: str, suffix: str) -> None:
        super().__init__()
        self._prefix = prefix
        self._extra = len(prefix.encode()) + len(suffix.encode())
        self.ascii = (prefix + suffix).isascii()

    def __missing__(self, length: int) -> str:
        framed = f"${self._extra + length}\r\n{self._prefix}"
        if len(self) < _CACHED_LENGTHS:
            self[length] = framed
        return framed


class _BulkFraming(dict[int, bytes]):
    """``$<length>\\r\\n`` for each length, made on first use (at most ``_CACHED_LENGTHS``)."""

    def __missing__(self, length: int) -> bytes:
        framed = b"$%d\r\n" % length
        if len(self) < _CACHED_LENGTHS:
            self[length] = framed
        return framed


@lru_cache(maxsize=64)
def _framing(prefix: str, suffix: str) -> _Framing:
    return _Framing(prefix, suffix)


_BULK = _BulkFraming()
