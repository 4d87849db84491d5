"""Arrow record batches in and out of the kernel, as ``score-file``'s Parquet path reads them.

In: a batch's rows are made TransactionEvents by the same ``Conformer`` that checks a
Parquet file's rows for ``score-file`` (defaults filled, timestamps as epoch milliseconds,
a row that could not have come out of the Avro decoder rejected with its reason), then
held as columns (``Records``), the form the stream's decoder gives the kernel.

Out: one row per input row. A scored row carries the ScoredEvent's fields; a rejected row
carries ``error_class``, ``error_message`` and ``error_stage`` (the ``Rejection``), its
position in ``source_offset`` and what could be read of its ids. Timestamps are UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from itertools import repeat
from typing import Any

import pyarrow as pa

from streamer.backfill.parquet import arrow_schema
from streamer.backfill.records import Conformer
from streamer.backfill.run import OFFLINE_PARTITION
from streamer.codec.columns import Column, Records
from streamer.codec.schemas import scored_schema, transaction_schema
from streamer.codec.schemas import without_logical_types as plain
from streamer.errors import Rejection

ROW = "__streamer_row"  # the input position the driver attaches (``positions``)
ERRORS = (
    ("error_class", pa.string()),
    ("error_message", pa.string()),
    ("error_stage", pa.string()),
)


def conformer(columns: Sequence[str], source: str = "the DataFrame") -> Conformer:
    """Checks rows of these columns against the TransactionEvent schema (``ConfigError``
    now, on the driver, when a required column is missing)."""
    ours = transaction_schema()
    return Conformer(ours, plain(ours), list(columns), source)


@cache
def output_schema() -> pa.Schema:
    """ScoredEvent fields (every one nullable: a rejected row has no score) and the
    rejection's three columns."""
    fields = [f.with_nullable(True) for f in arrow_schema(scored_schema())]
    return pa.schema(fields + [pa.field(name, kind) for name, kind in ERRORS])


def input_rows(
    batch: pa.RecordBatch, conform: Conformer
) -> tuple[list[int], list[dict[str, Any]], list[Any]]:
    """The batch's positions, its rows as read, and each as a TransactionEvent dict or a
    ``Rejection`` (``score-file``'s Parquet reader, ``backfill.parquet``, does the same)."""
    positions: list[int] = batch.column(ROW).to_pylist()  # type: ignore[assignment]
    raw = batch.drop_columns([ROW]).to_pylist()
    return positions, raw, [conform(row) for row in raw]


def as_records(events: Sequence[Mapping[str, Any]]) -> Records:
    """Conformed events as columns, in the schema's field order."""
    names = list(events[0]) if events else []
    return Records({name: [e[name] for e in events] for name in names}, len(events))


def scored_batch(
    columns: Mapping[str, Column],
    n: int,
    rejected: Sequence[tuple[int, Rejection, Any]],
    schema: pa.Schema,
) -> pa.RecordBatch:
    """``n`` scored rows (the kernel's columns) followed by the rejected rows, as a batch of
    ``schema`` (Spark's Arrow form of ``output_schema``)."""
    data: dict[str, list[Any]] = {}
    for field in output_schema():
        column = columns.get(field.name)
        scored = [None] * n if column is None else _expand(column, n)
        data[field.name] = scored + [_rejected_value(field.name, r) for r in rejected]
    return pa.RecordBatch.from_pydict(data, schema=output_schema()).cast(schema)


def _expand(column: Column, n: int) -> list[Any]:
    return column if isinstance(column, list) else list(repeat(column[0], n))


def _rejected_value(name: str, rejected: tuple[int, Rejection, Any]) -> Any:
    position, problem, row = rejected
    if name == "source_offset":
        return position
    if name == "source_partition":
        return OFFLINE_PARTITION
    if name == "error_class":
        return problem.error_class
    if name == "error_message":
        return problem.message
    if name == "error_stage":
        return problem.stage
    if name in ("transaction_id", "card_id", "merchant_id") and isinstance(row, Mapping):
        value = row.get(name)
        return value if isinstance(value, str) else None
    return None
