"""Tensors of the Open Inference Protocol to and from the event dicts the kernel scores. Pure.

A request carries one tensor per ``TransactionEvent`` field, named after the field, of
shape ``[N]``: N transactions. The fields and their datatypes come from the Avro schema
(``schemas/transaction_event.avsc``), so a field added there is an input here with no
change: strings and enums are ``BYTES``, booleans ``BOOL``, ``int``/``long`` (event time in
epoch milliseconds) any integer datatype whose values fit, floating fields ``FP32``/``FP64``.
A field with a default or a null may be left out: every row takes the default (null).
There is no per-row null in a tensor: rows with and without a device id go in separate
requests, or the tensor is left out.

Element values arrive as JSON lists (``data``) or raw little-endian bytes (REST's binary
extension, gRPC's ``raw_input_contents``); BYTES elements raw are a 4-byte length, then the
bytes. Anything malformed is a ``TensorError`` naming the input: HTTP 400, gRPC
INVALID_ARGUMENT.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from streamer.codec.schemas import transaction_schema

INTEGERS = {
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
}
FLOATS = {"FP32": "<f4", "FP64": "<f8"}
RAW_DTYPES = {**INTEGERS, **FLOATS, "BOOL": "?"}
_INT_RANGES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_NO_DEFAULT = object()


class TensorError(ValueError):
    """A request whose tensors are not the model's inputs (HTTP 400, INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class InputField:
    """One input tensor: a TransactionEvent field, its datatype and what it accepts."""

    name: str
    datatype: str
    kind: str  # "bytes", "bool", "int", "long", "float"
    default: Any = _NO_DEFAULT
    symbols: frozenset[str] | None = None

    @property
    def optional(self) -> bool:
        return self.default is not _NO_DEFAULT

    def accepts(self, datatype: str) -> bool:
        if self.kind in _INT_RANGES:
            return datatype in INTEGERS
        if self.kind == "float":
            return datatype in FLOATS or datatype in INTEGERS
        return datatype == self.datatype


@dataclass(frozen=True)
class Tensor:
    """An input tensor as a request carries it: ``data`` (JSON/typed) or ``raw`` bytes."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Sequence[Any] | None = None
    raw: bytes | None = None


def _field(avro: dict[str, Any]) -> InputField:
    kind: Any = avro["type"]
    default = avro.get("default", _NO_DEFAULT)
    if isinstance(kind, list):  # ["null", X]: nullable, null unless sent
        kind = next(t for t in kind if t != "null")
        default = avro.get("default")
    symbols = None
    if isinstance(kind, dict):
        symbols = frozenset(kind["symbols"]) if kind.get("type") == "enum" else None
        kind = "string" if symbols else kind["type"]
    mapped = {
        "string": ("BYTES", "bytes"),
        "boolean": ("BOOL", "bool"),
        "int": ("INT32", "int"),
        "long": ("INT64", "long"),
        "float": ("FP64", "float"),
        "double": ("FP64", "float"),
    }[kind]
    return InputField(avro["name"], *mapped, default=default, symbols=symbols)


@lru_cache(maxsize=1)
def input_fields() -> tuple[InputField, ...]:
    """The model's input tensors, in the schema's order (built once)."""
    return tuple(_field(f) for f in transaction_schema()["fields"])


def decode_bytes(raw: bytes, name: str) -> list[bytes]:
    """The elements of a raw BYTES tensor (each a 4-byte little-endian length, then bytes)."""
    out: list[bytes] = []
    offset, size = 0, len(raw)
    while offset < size:
        if offset + 4 > size:
            raise TensorError(f"input '{name}': raw BYTES content ends inside a length prefix")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > size:
            raise TensorError(f"input '{name}': raw BYTES element runs past the content")
        out.append(raw[offset : offset + length])
        offset += length
    return out


def encode_bytes(values: Sequence[bytes]) -> bytes:
    """Raw BYTES content of ``values`` (the inverse of ``decode_bytes``)."""
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def _raw_values(field: InputField, tensor: Tensor, rows: int) -> list[Any]:
    assert tensor.raw is not None
    if tensor.datatype == "BYTES":
        return decode_bytes(tensor.raw, field.name)
    dtype = np.dtype(RAW_DTYPES[tensor.datatype])
    if len(tensor.raw) != rows * dtype.itemsize:
        raise TensorError(
            f"input '{field.name}': {len(tensor.raw)} bytes of raw content, expected "
            f"{rows * dtype.itemsize} for shape [{rows}] of {tensor.datatype}"
        )
    values: list[Any] = np.frombuffer(tensor.raw, dtype=dtype).tolist()
    return values


def _flat(data: Any) -> list[Any]:
    """Nested (row-major) JSON lists flattened, as the protocol allows."""
    if not isinstance(data, list | tuple):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flat(item) if isinstance(item, list | tuple) else (item,))
    return out


def _typed(field: InputField, datatype: str, values: list[Any]) -> list[Any]:
    """``values`` checked against ``datatype`` and the field: strings, bools or numbers."""
    name = field.name
    if datatype == "BYTES":
        out = []
        for row, element in enumerate(values):
            value = element
            if isinstance(element, bytes | bytearray):
                try:
                    value = bytes(element).decode("utf-8")
                except UnicodeDecodeError:
                    raise TensorError(f"input '{name}' row {row}: not UTF-8 text") from None
            if not isinstance(value, str):
                raise TensorError(f"input '{name}' row {row}: a BYTES element must be a string")
            if field.symbols is not None and value not in field.symbols:
                allowed = ", ".join(sorted(field.symbols))
                raise TensorError(f"input '{name}' row {row}: not one of {allowed}")
            out.append(value)
        return out
    if datatype == "BOOL":
        if any(v.__class__ is not bool for v in values):
            raise TensorError(f"input '{name}': BOOL elements must be true or false")
        return values
    if datatype in INTEGERS:
        if any(v.__class__ is not int for v in values):
            raise TensorError(f"input '{name}': {datatype} elements must be integers")
        low, high = _INT_RANGES.get(field.kind, (-(2**63), 2**63 - 1))
        if values and (min(values) < low or max(values) > high):
            raise TensorError(f"input '{name}': a value is outside {low}..{high}")
        return values if field.kind != "float" else [float(v) for v in values]
    if any(v.__class__ not in (int, float) for v in values):
        raise TensorError(f"input '{name}': {datatype} elements must be numbers")
    return [float(v) for v in values]


def column(field: InputField, tensor: Tensor, rows: int) -> list[Any]:
    """The ``rows`` values of ``field`` from ``tensor``; ``TensorError`` naming the input."""
    if not field.accepts(tensor.datatype):
        raise TensorError(
            f"input '{field.name}': datatype {tensor.datatype}, expected {field.datatype}"
        )
    if tensor.shape != (rows,):
        raise TensorError(
            f"input '{field.name}': shape {list(tensor.shape)}, expected [{rows}] "
            "(one element per transaction, every input the same length)"
        )
    if tensor.raw is not None:
        values = _raw_values(field, tensor, rows)
    elif tensor.data is not None:
        values = _flat(tensor.data)
    else:
        raise TensorError(f"input '{field.name}': no data")
    if len(values) != rows:
        raise TensorError(
            f"input '{field.name}': {len(values)} elements, its shape [{rows}] says {rows}"
        )
    return _typed(field, tensor.datatype, values)


def decode_events(tensors: Sequence[Tensor], max_rows: int) -> list[dict[str, Any]]:
    """One event dict per row, as ``/v1/score`` builds them; ``TensorError`` when the tensors
    are not the model's inputs (unknown, repeated or missing, wrong shape or datatype)."""
    fields = {f.name: f for f in input_fields()}
    given: dict[str, Tensor] = {}
    for tensor in tensors:
        if tensor.name not in fields:
            raise TensorError(f"input '{tensor.name}' is not an input of this model")
        if tensor.name in given:
            raise TensorError(f"input '{tensor.name}' is given twice")
        given[tensor.name] = tensor
    if not given:
        raise TensorError("no inputs: send one tensor per TransactionEvent field")
    first = next(iter(given.values()))
    rows = first.shape[0] if first.shape else 0
    if rows < 1 or rows > max_rows:
        raise TensorError(
            f"input '{first.name}': {rows} rows; between 1 and {max_rows} "
            "(--max-request-events) per request"
        )
    columns: dict[str, list[Any]] = {}
    for field in fields.values():
        sent = given.get(field.name)
        if sent is not None:
            columns[field.name] = column(field, sent, rows)
        elif field.optional:
            columns[field.name] = [field.default] * rows
        else:
            raise TensorError(f"input '{field.name}' is required")
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
