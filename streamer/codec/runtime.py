"""Helpers that the generated codecs call: varints, fixed-width numbers, errors.

The generated functions (``decoder_gen.py``, ``encoder_gen.py``) inline the common case
(a one-byte varint) and call these for the rest. Decoding is strict where fastavro is
lenient: a varint longer than Avro allows (10 bytes for a long, 5 for an int) or encoding
a value beyond 64 (32) bits raises ``InvalidAvroError`` instead of being accepted silently.
"""

from __future__ import annotations

import struct
from operator import index

unpack_float = struct.Struct("<f").unpack_from
unpack_double = struct.Struct("<d").unpack_from
pack_float = struct.Struct("<f").pack
pack_double = struct.Struct("<d").pack

BOOLEANS = (False, True)
"""Indexed by the byte read: any byte other than 0 or 1 raises ``IndexError``."""

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


class InvalidAvroError(Exception):
    """The bytes are not a datum of the writer schema (the caller diagnoses which way)."""


class IncompatibleError(Exception):
    """The writer's datum cannot be read as the reader schema (Avro resolution failed)."""


SMALL_VALUES: tuple[int | None, ...] = tuple(
    ((b >> 1) ^ -(b & 1)) if b < 128 else None for b in range(256)
)
"""A varint's value when its first byte is all of it (``None``: more bytes follow)."""
SMALL_LENGTHS = tuple((b >> 1) if b < 128 and not b & 1 else -1 for b in range(256))
"""A length when its first byte is all of it (-1: more bytes follow, or negative)."""


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """The zigzag varint starting at ``data[pos]`` (at most 10 bytes) and the next position.

    Unrolled for the lengths seen in practice (epoch millis take 6 bytes): a loop costs
    twice as much per byte in CPython.
    """
    b = data[pos]
    acc = b & 0x7F
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 1
    b = data[pos + 1]
    acc |= (b & 0x7F) << 7
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 2
    b = data[pos + 2]
    acc |= (b & 0x7F) << 14
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 3
    b = data[pos + 3]
    acc |= (b & 0x7F) << 21
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 4
    b = data[pos + 4]
    acc |= (b & 0x7F) << 28
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 5
    b = data[pos + 5]
    acc |= (b & 0x7F) << 35
    if b < 0x80:
        return (acc >> 1) ^ -(acc & 1), pos + 6
    return _read_long_tail(data, pos + 6, acc)


def _read_long_tail(data: bytes, pos: int, acc: int) -> tuple[int, int]:
    shift = 42
    while True:
        b = data[pos]
        acc |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            break
        if shift == 63:
            raise InvalidAvroError("long varint longer than 10 bytes")
        shift += 7
    if acc >> 64:
        raise InvalidAvroError("long varint beyond 64 bits")
    return (acc >> 1) ^ -(acc & 1), pos


def read_int(data: bytes, pos: int) -> tuple[int, int]:
    """The zigzag varint starting at ``data[pos]`` (at most 5 bytes, 32 bits)."""
    value, end = read_long(data, pos)
    if end - pos > 5:
        raise InvalidAvroError("int varint longer than 5 bytes")
    if not _INT_MIN <= value <= _INT_MAX:
        raise InvalidAvroError("int varint beyond 32 bits")
    return value, end


def read_length(data: bytes, pos: int) -> tuple[int, int]:
    """A non-negative length (of bytes, a string) and the next position."""
    value, pos = read_long(data, pos)
    if value < 0:
        raise InvalidAvroError("negative length")
    return value, pos


# Varint bytes of 14-bit chunks: 32k small bytes objects (about 1.5 MB), so that encoding
# an epoch-millis timestamp is three lookups instead of a loop over six bytes (2x faster).
_LAST14 = tuple(bytes((c,)) if c < 128 else bytes((c & 0x7F | 0x80, c >> 7)) for c in range(16384))
_MORE14 = tuple(bytes((c & 0x7F | 0x80, c >> 7 | 0x80)) for c in range(16384))
LENGTHS = _LAST14[:128:2]
"""The varint of each length below 64 (zigzag: twice the value)."""


def write_long(value: object) -> bytes:
    """The zigzag varint of ``value`` (an integer in the signed 64-bit range)."""
    n = value if value.__class__ is int else index(value)  # type: ignore[arg-type]
    z = (n << 1) ^ (n >> 63)  # TypeError above for floats, datetimes, str
    if z < 0x4000:
        return _LAST14[z]
    if z < 0x10000000:
        return _MORE14[z & 0x3FFF] + _LAST14[z >> 14]
    if z < 0x40000000000:
        return _MORE14[z & 0x3FFF] + _MORE14[z >> 14 & 0x3FFF] + _LAST14[z >> 28]
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise ValueError(f"{n} is out of range for an Avro long")
    out = []
    while z > 0x7F:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def write_int(value: object) -> bytes:
    """The zigzag varint of ``value`` (an integer in the signed 32-bit range)."""
    n = index(value)  # type: ignore[arg-type]
    if not _INT_MIN <= n <= _INT_MAX:
        raise ValueError(f"{n} is out of range for an Avro int")
    return write_long(n)


def write_length(n: int) -> bytes:
    """The varint of a non-negative length or count."""
    return LENGTHS[n] if n < 64 else write_long(n)
