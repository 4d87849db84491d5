"""Parquet input and output for backfills (pyarrow, the ``parquet`` extra).

Input rows are read a chunk at a time (``iter_batches``) and checked against our
TransactionEvent schema, because a Parquet file has no Avro writer schema to resolve:
a row that does not fit is rejected with its reason, as the stream dead-letters a message
that does not decode. Output columns are the ScoredEvent's fields with Arrow types that
data-lake tools read without help: strings, int64/int32, float64, and UTC millisecond
timestamps for the ``timestamp-millis`` fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from streamer.backfill.records import Conformer
from streamer.codec.schemas import Schema, scored_schema, transaction_schema
from streamer.codec.schemas import without_logical_types as plain
from streamer.errors import ConfigError

try:
    import pyarrow as pa
    import pyarrow.parquet as pq

    HAVE_PYARROW = True
except ImportError:  # pragma: no cover - depends on the installed extras
    HAVE_PYARROW = False


def _need_pyarrow() -> None:
    if not HAVE_PYARROW:
        raise ConfigError(
            "Parquet files need pyarrow: pip install 'streamer[parquet]' (or use .avro files)"
        )


def read_parquet(path: Path, handle: IO[bytes], size: int) -> Iterator[list[Any]]:
    """Chunks of conformed rows (records or ``Rejection``) from a Parquet file."""
    _need_pyarrow()
    try:
        parquet = pq.ParquetFile(handle)
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(f"{path} is not a Parquet file: {exc}") from None
    ours = transaction_schema()
    conform = Conformer(ours, plain(ours), parquet.schema_arrow.names, str(path))
    try:
        for batch in parquet.iter_batches(batch_size=size):
            yield [conform(row) for row in batch.to_pylist()]
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(
            f"{path} is damaged ({type(exc).__name__}: {exc}); no output was written"
        ) from None


def arrow_schema(schema: Schema) -> Any:
    """The Arrow schema of an Avro record schema (the ScoredEvent's, here)."""
    _need_pyarrow()
    return pa.schema([_arrow_field(f) for f in schema["fields"]])


def _enum_names() -> set[str]:
    """Full and short names of the ScoredEvent's enums, for fields that refer to them."""
    names: set[str] = set()
    for field in scored_schema()["fields"]:
        avro = field["type"]
        if isinstance(avro, dict) and avro.get("type") == "enum":
            full = str(avro["name"])
            names |= {full, full.rsplit(".", 1)[-1]}
    return names


def _arrow_field(field: dict[str, Any]) -> Any:
    avro = field["type"]
    nullable = isinstance(avro, list) and "null" in avro
    if isinstance(avro, list):
        avro = next(t for t in avro if t != "null")
    arrow: Any
    if isinstance(avro, dict) and avro.get("logicalType") == "timestamp-millis":
        arrow = pa.timestamp("ms", tz="UTC")
    elif isinstance(avro, dict) and avro.get("type") == "enum":
        arrow = pa.string()
    elif isinstance(avro, str) and avro in _enum_names():
        arrow = pa.string()  # a reference to an enum defined earlier (shadow_decision)
    elif isinstance(avro, str) and avro in _primitives():
        arrow = _primitives()[avro]
    elif isinstance(avro, dict) and avro.get("type") == "map" and avro["values"] in _primitives():
        arrow = pa.map_(pa.string(), _primitives()[avro["values"]])  # logged features
    elif isinstance(avro, dict) and avro.get("type") == "array" and isinstance(avro["items"], dict):
        arrow = pa.list_(pa.struct([_arrow_field(f) for f in avro["items"]["fields"]]))  # reasons
    else:
        raise ConfigError(f"no Parquet column type for field {field['name']} ({avro})")
    return pa.field(field["name"], arrow, nullable=nullable)


def _primitives() -> dict[str, Any]:
    return {"string": pa.string(), "long": pa.int64(), "int": pa.int32(), "double": pa.float64()}


class ParquetWriter:
    """ScoredEvents as a Parquet file, one row group per chunk."""

    def __init__(self, handle: IO[bytes], schema: Schema) -> None:
        self._schema = arrow_schema(schema)
        self._writer = pq.ParquetWriter(handle, self._schema, compression="zstd")

    def write(self, records: list[dict[str, Any]]) -> None:
        if records:
            self._writer.write_table(pa.Table.from_pylist(records, schema=self._schema))

    def close(self) -> None:
        self._writer.close()
