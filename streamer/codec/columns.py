"""Records as columns: a batch's values field by field instead of a dict per record.

A column is a list holding one value per record, or a 1-tuple holding the value of every
record (a model name, a batch's time). The C encoder writes columns straight to Avro
(``Encoder.encode_columns``); ``records_of`` makes the dicts where dicts are wanted.

The C decoder makes ``Records`` (``Decoder.decode_columns``): a batch of decoded events
as columns that still reads as a sequence of dicts. The scoring kernel takes a column
with ``column_of`` whatever it is given, so the stream's events never become dicts, and
the API's and the file job's lists of dicts work unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any, overload

Column = list[Any] | tuple[Any]


def records_of(columns: Mapping[str, Column], n: int) -> list[dict[str, Any]]:
    """One dict per record, its keys in the columns' order."""
    names = list(columns)
    values = [c if isinstance(c, list) else repeat(c[0], n) for c in columns.values()]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


class Records(Sequence[dict[str, Any]]):
    """``n`` records held as columns (field name → a list of ``n`` values), in field order.

    Reads as a sequence of dicts: ``records[i]`` builds record ``i``'s dict (for a record
    looked at alone: a rejection, a dead letter). The columns are shared, not copied: treat
    them as read-only.
    """

    __slots__ = ("_n", "columns")

    def __init__(self, columns: dict[str, list[Any]], n: int) -> None:
        self.columns = columns
        self._n = n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Records: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | Records:
        if isinstance(index, slice):
            return self.take(range(self._n)[index])
        if not -self._n <= index < self._n:
            raise IndexError(f"record {index} of {self._n}")
        return {name: column[index] for name, column in self.columns.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(self.__getitem__, range(self._n))

    def __repr__(self) -> str:
        return f"Records({self._n} records of {len(self.columns)} fields)"

    def take(self, rows: Sequence[int]) -> Records:
        """The records at ``rows``, in that order (this object when that is all of them)."""
        if len(rows) == self._n and list(rows) == list(range(self._n)):
            return self
        pick = list(rows)
        return Records(
            {name: list(map(column.__getitem__, pick)) for name, column in self.columns.items()},
            len(pick),
        )


def column_of(records: Sequence[Mapping[str, Any]], name: str) -> list[Any]:
    """Field ``name`` of every record (``KeyError`` where one lacks it). Of ``Records``,
    their own column: read it, do not change it."""
    if isinstance(records, Records):
        return records.columns[name]
    return list(map(itemgetter(name), records))


def optional_column_of(
    records: Sequence[Mapping[str, Any]], name: str, default: Any = None
) -> list[Any]:
    """Field ``name`` of every record, ``default`` where a record lacks it."""
    if isinstance(records, Records):
        found = records.columns.get(name)
        return [default] * len(records) if found is None else found
    return [record.get(name, default) for record in records]


def take(records: Sequence[Mapping[str, Any]], rows: Sequence[int]) -> Sequence[Mapping[str, Any]]:
    """The records at ``rows``, in that order; ``Records`` stay columns."""
    if isinstance(records, Records):
        return records.take(rows)
    return [records[row] for row in rows]
