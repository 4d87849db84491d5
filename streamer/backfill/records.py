"""Rows from a file made into the events the kernel scores, as the stream decodes them.

The stream's decoder keeps timestamps as epoch milliseconds and gives every field of our
schema a value (Avro resolution fills defaults). A file's rows are brought to that shape
here, so a backfill sees exactly what the stream would have seen. A Parquet row has no
writer schema to resolve with, so it is checked against ours: a row that could not have
come out of the Avro decoder is rejected (``SchemaMismatch``), like a message that does
not decode.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastavro.validation import validate

from streamer.codec.schemas import Schema
from streamer.errors import ConfigError, Rejection

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_NO_DEFAULT = object()


def epoch_millis(record: dict[str, Any]) -> dict[str, Any]:
    """Timestamps as epoch milliseconds, as the stream decodes them (fastavro converts a
    writer's ``timestamp-millis`` to ``datetime``; so does pyarrow for timestamp columns)."""
    for name, value in record.items():
        if isinstance(value, datetime):
            aware = value if value.tzinfo else value.replace(tzinfo=UTC)
            record[name] = (aware - _EPOCH) // _MILLISECOND
    return record


class Conformer:
    """Makes a column-named row a record of ``schema`` (defaults filled), or rejects it."""

    def __init__(self, schema: Schema, plain: Schema, columns: list[str], source: str) -> None:
        fields = schema["fields"]
        self._plain = plain
        self._defaults = {f["name"]: f.get("default", _NO_DEFAULT) for f in fields}
        missing = [n for n, d in self._defaults.items() if n not in columns and d is _NO_DEFAULT]
        if missing:
            raise ConfigError(
                f"{source} has no column {', '.join(missing)}; a TransactionEvent needs "
                f"{', '.join(n for n, d in self._defaults.items() if d is _NO_DEFAULT)}"
            )

    def __call__(self, row: dict[str, Any]) -> dict[str, Any] | Rejection:
        record = {name: row.get(name, default) for name, default in self._defaults.items()}
        epoch_millis(record)
        if validate(record, self._plain, raise_errors=False):
            return record
        return Rejection("SchemaMismatch", _mismatch(record, self._plain))


def _mismatch(record: dict[str, Any], plain: Schema) -> str:
    """Which fields do not fit the schema (names and expected types, never the values)."""
    wrong = [
        f"{f['name']} ({_type_name(f['type'])})"
        for f in plain["fields"]
        if not validate(record[f["name"]], f["type"], raise_errors=False)
    ]
    return f"not a TransactionEvent: {', '.join(wrong) or 'a field'} does not match the schema"


def _type_name(avro_type: Any) -> str:
    if isinstance(avro_type, list):
        return " or ".join(_type_name(t) for t in avro_type)
    if isinstance(avro_type, dict):
        return str(avro_type.get("type"))
    return str(avro_type).rsplit(".", 1)[-1]
