"""Records as columns: a batch's values field by field instead of a dict per record.

A column is a list holding one value per record, or a 1-tuple holding the value of every
record (a model name, a batch's time). The C encoder writes columns straight to Avro
(``Encoder.encode_columns``); ``records_of`` makes the dicts where dicts are wanted.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat
from typing import Any

Column = list[Any] | tuple[Any]


def records_of(columns: Mapping[str, Column], n: int) -> list[dict[str, Any]]:
    """One dict per record, its keys in the columns' order."""
    names = list(columns)
    values = [c if isinstance(c, list) else repeat(c[0], n) for c in columns.values()]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
