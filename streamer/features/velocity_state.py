"""One card's velocity state and its bytes. Pure: no I/O.

The state is what the velocity rules (``streamer.features.velocity``) keep per card: a log
of exact entries (one per accepted transaction), day tiles that summarise entries evicted
from the log, and the highest input position seen. It is stored as one Redis string per
card, written whole after every batch, so the encoding is canonical: the same state always
gives the same bytes, and two processes that fold the same events write identical values.

Encoding (little-endian, columnar: each column is one ``array`` copied in or out whole,
so reading and writing a state creates no Python object per value)::

    offset  size  field
    0       1     version (VERSION); anything else reads as an empty state
    1       8     high            u64, the highest input position seen plus one (0: none;
                                  the Redis CAS script compares these 8 bytes, most
                                  significant last)
    9       8     newest_ms       i64, the greatest event time ever added
    17      8     tiled_last_ms   i64, greatest event time among tiled entries, -1 if none
    25      2     tiled_last_country  u16
    27      2     n_log           u16
    29      2     n_tiles         u16
    31            log columns, n_log values each, sorted by (event time, position):
                  time_ms i64, position+1 u64, amount_milli i64, txn_hash u64,
                  merchant_hash u32, country u16                         (38 bytes/entry)
                  tile columns, n_tiles values each, sorted by day:
                  day u16 (days since 1970-01-01), count u16, sum_milli i64,
                  max_milli i64, sumsq_lo u64, sumsq_hi u32              (32 bytes/tile)

Amounts are kept as integers in thousandths of the major unit (every ISO 4217 currency
has at most three decimals, so this is exact for real amounts): sums and sums of squares
are then exact integers, and the 30-day statistics do not depend on the order in which
entries were added or moved into tiles. A day's sum of squares can pass 2**64 (a day of
large IDR or VND amounts), hence its two parts (``sumsq = lo + hi * 2**64``).

Hashes are stable across processes and machines, unlike Python's salted ``hash()``:
blake2b (8 bytes) for transaction ids, CRC-32 for merchant ids.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import blake2b

VERSION = 1
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
HEADER = struct.Struct("<BQqqHHH")
HEADER_SIZE = HEADER.size  # 31
HIGH_OFFSET = 1
"""Byte offset of ``high`` (u64 little-endian, position + 1) in every state blob.

Positions are kept plus one, so that 0 can mean "before every position": a state seeded
from a history whose positions are not the live partition's (``rebase``) has high 0 and
entries at 0, and every live event is then new to it and sees all of it."""
LOG_COLUMNS = ("times", "positions", "amounts", "txns", "merchants", "countries")
TILE_COLUMNS = ("days", "counts", "sums", "maxes", "sq_lo", "sq_hi")
_TYPES = {
    "times": "q",
    "positions": "Q",
    "amounts": "q",
    "txns": "Q",
    "merchants": "I",
    "countries": "H",
    "days": "H",
    "counts": "H",
    "sums": "q",
    "maxes": "q",
    "sq_lo": "Q",
    "sq_hi": "I",
}
_WIDTH = {name: array(code).itemsize for name, code in _TYPES.items()}
LOG_ENTRY_SIZE = sum(_WIDTH[c] for c in LOG_COLUMNS)  # 38
TILE_SIZE = sum(_WIDTH[c] for c in TILE_COLUMNS)  # 32
assert (LOG_ENTRY_SIZE, TILE_SIZE) == (38, 32), "array item sizes differ on this platform"
_SWAP = sys.byteorder != "little"
_CODES = tuple(_TYPES[c] for c in (*LOG_COLUMNS, *TILE_COLUMNS))


@lru_cache(maxsize=4096)
def _slices(n_log: int, n_tiles: int) -> tuple[slice, ...]:
    """Where each column of a state with these sizes sits in its blob."""
    out, offset = [], HEADER_SIZE
    for names, count in ((LOG_COLUMNS, n_log), (TILE_COLUMNS, n_tiles)):
        for name in names:
            out.append(slice(offset, offset + count * _WIDTH[name]))
            offset += count * _WIDTH[name]
    return tuple(out)


NO_TIME = -1


def _col(name: str) -> array[int]:
    return array(_TYPES[name])


@dataclass(slots=True)
class CardState:
    """A card's velocity state as columns (``array``), for folding events into it.

    Log columns are parallel and sorted by (event time, position); tile columns are
    parallel and sorted by day. ``high`` and ``positions`` hold input positions plus one;
    ``high`` is 0 for a card never seen.
    """

    high: int = 0
    newest: int = NO_TIME
    tiled_last: int = NO_TIME
    tiled_last_country: int = 0
    times: array[int] = field(default_factory=lambda: _col("times"))
    positions: array[int] = field(default_factory=lambda: _col("positions"))
    amounts: array[int] = field(default_factory=lambda: _col("amounts"))
    txns: array[int] = field(default_factory=lambda: _col("txns"))
    merchants: array[int] = field(default_factory=lambda: _col("merchants"))
    countries: array[int] = field(default_factory=lambda: _col("countries"))
    days: array[int] = field(default_factory=lambda: _col("days"))
    counts: array[int] = field(default_factory=lambda: _col("counts"))
    sums: array[int] = field(default_factory=lambda: _col("sums"))
    maxes: array[int] = field(default_factory=lambda: _col("maxes"))
    sq_lo: array[int] = field(default_factory=lambda: _col("sq_lo"))
    sq_hi: array[int] = field(default_factory=lambda: _col("sq_hi"))

    def log_columns(self) -> tuple[array[int], ...]:
        """The log's columns, in ``LOG_COLUMNS`` order."""
        return (self.times, self.positions, self.amounts, self.txns, self.merchants,
                self.countries)  # fmt: skip

    def tile_columns(self) -> tuple[array[int], ...]:
        """The tiles' columns, in ``TILE_COLUMNS`` order."""
        return (self.days, self.counts, self.sums, self.maxes, self.sq_lo, self.sq_hi)


_TXN_HASHER = blake2b(digest_size=8)  # copied per id: cheaper than a new one each time


def txn_digest(transaction_id: str) -> bytes:
    """The 8 bytes of a transaction id's stable hash (blake2b), as a state stores them:
    ``txn_hash`` little-endian."""
    hasher = _TXN_HASHER.copy()
    hasher.update(transaction_id.encode())
    return hasher.digest()


def txn_hash(transaction_id: str) -> int:
    """The 64-bit stable hash of a transaction id that deduplication compares."""
    return int.from_bytes(txn_digest(transaction_id), "little")


def merchant_hash(merchant_id: str) -> int:
    """The 32-bit stable hash of a merchant id that distinct-merchant counts compare:
    CRC-32, a seventh of blake2b's cost; two of a card's day of merchants share one with
    a chance of about 2**-32 per pair, and it would count them as one."""
    return zlib.crc32(merchant_id.encode())


def state_size(n_log: int, n_tiles: int) -> int:
    """Bytes of a state blob with ``n_log`` log entries and ``n_tiles`` day tiles."""
    return HEADER_SIZE + n_log * LOG_ENTRY_SIZE + n_tiles * TILE_SIZE


def stored_high(blob: bytes | None) -> int | None:
    """The highest position a stored state has seen (-1: before every position), or None
    for no state: absent, or bytes that are not a well-formed state of this version (the
    Redis CAS script applies the same test, and overwrites those)."""
    if not blob or len(blob) < HEADER_SIZE or blob[0] != VERSION:
        return None
    _, high, _, _, _, n, m = HEADER.unpack_from(blob)
    return int(high) - 1 if len(blob) == state_size(n, m) else None


def high_position(blob: bytes | None) -> int:
    """The ``high_position`` of a stored state; -1 for none (``stored_high`` tells a
    state rebased before every position from no state)."""
    high = stored_high(blob)
    return -1 if high is None else high


def unpack(blob: bytes | None) -> CardState | None:
    """The state in ``blob``: an empty state for None, and None for bytes that are not a
    state of this version (wrong version byte or length), which the caller counts and
    replaces by an empty state. Never raises."""
    if blob is None:
        return CardState()
    if len(blob) < HEADER_SIZE or blob[0] != VERSION:
        return None
    _, high, newest, tiled_last, tiled_country, n, m = HEADER.unpack_from(blob)
    if len(blob) != state_size(n, m):
        return None
    columns = list(map(array, _CODES, map(blob.__getitem__, _slices(n, m))))
    if _SWAP:
        for column in columns:
            column.byteswap()
    return CardState(high, newest, tiled_last, tiled_country, *columns)


def pack(state: CardState) -> bytes:
    """The canonical bytes of ``state`` (see the module docstring for the layout)."""
    s = state
    head = HEADER.pack(
        VERSION, s.high, s.newest, s.tiled_last, s.tiled_last_country, len(s.times), len(s.days)
    )
    columns = (*s.log_columns(), *s.tile_columns())
    if _SWAP:
        columns = tuple(array(c.typecode, c) for c in columns)
        for c in columns:
            c.byteswap()
    return b"".join([head, *[c.tobytes() for c in columns]])


_FIRST = struct.Struct(HEADER.format + "qQq8sIH")  # a header, then a log of one entry


def first_states(
    positions: list[int],
    times: list[int],
    amounts: list[int],
    transaction_ids: Sequence[str],
    merchant_ids: Sequence[str],
    countries: list[int],
) -> list[bytes]:
    """``pack`` of empty states after each one's first entry (positions plus one, times,
    amounts in thousandths, ids, country codes), one ``struct`` call each: a card's first
    transaction is the stream's most common event on fresh states, and building, filling
    and packing a ``CardState`` costs it several times more. The same bytes (the
    transaction hash packed as its digest: ``txn_hash`` is that digest little-endian)."""
    pack, no = _FIRST.pack, NO_TIME
    return [
        pack(VERSION, p, t, no, 0, 1, 0, t, p, a, txn_digest(x), merchant_hash(m), c)
        for p, t, a, x, m, c in zip(
            positions, times, amounts, transaction_ids, merchant_ids, countries, strict=True
        )
    ]


def rebase(blob: bytes) -> bytes | None:
    """``blob`` as a state that comes before every input position (high and every entry
    at "none"): for seeding Redis from a history whose positions are not the live
    partition's offsets (a plain file's indexes). Live events are then all new to it and
    see all of it, and a live state already in Redis is never replaced by it (the
    compare-and-set keeps the higher position). None for bytes that are not a state."""
    state = unpack(blob)
    if state is None:
        return None
    state.high = 0
    state.positions = array(_TYPES["positions"], bytes(len(state.positions) * 8))
    return pack(state)
