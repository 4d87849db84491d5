"""The request model, generated from ``schemas/transaction_event.avsc`` (never written twice).

Each Avro field becomes a pydantic field with the same name, type, default and ``doc``
(the OpenAPI description), so a field added to the schema appears in the API and its
documentation with no change here. Types are strict: JSON ``"5411"`` is not an ``int`` and
``1.0`` is not a ``long``, as Avro would not accept them either. ``event_time`` alone is
lenient on form: epoch milliseconds or an ISO-8601 string (a zone is required), converted
to epoch ms, the decoded-Avro shape the kernel takes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    create_model,
)

from streamer.codec.schemas import Schema, transaction_schema

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_PRIMITIVES: dict[str, Any] = {
    "string": StrictStr,
    "boolean": StrictBool,
    "int": Annotated[StrictInt, Field(ge=INT32[0], le=INT32[1])],
    "long": Annotated[StrictInt, Field(ge=INT64[0], le=INT64[1])],
    "float": StrictFloat | StrictInt,
    "double": StrictFloat | StrictInt,
}
EpochMs = Annotated[StrictInt, Field(ge=INT64[0], le=INT64[1])]
Timestamp = EpochMs | AwareDatetime
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def python_type(avro_type: Any) -> Any:
    """The pydantic type of an Avro field type (primitives, enums, unions with null)."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise ValueError(f"unsupported Avro union {avro_type!r}")
        inner = python_type(branches[0])
        return inner | None if "null" in avro_type else inner
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "timestamp-millis":
            return Timestamp
        if avro_type.get("type") == "enum":
            return Literal[tuple(avro_type["symbols"])]
        return python_type(avro_type["type"])
    if avro_type in _PRIMITIVES:
        return _PRIMITIVES[avro_type]
    raise ValueError(f"unsupported Avro type {avro_type!r}")


def model_from_avro(schema: Schema, name: str | None = None) -> type[BaseModel]:
    """A frozen pydantic model with one field per Avro field (defaults and docs kept)."""
    fields: dict[str, Any] = {}
    for field in schema["fields"]:
        default = field.get("default", ...)
        fields[field["name"]] = (
            python_type(field["type"]),
            Field(default, description=field.get("doc")),
        )
    model_name = name or str(schema["name"]).rsplit(".", 1)[-1]
    model: type[BaseModel] = create_model(
        model_name, __base__=_Strict, __doc__=schema.get("doc"), **fields
    )
    return model


@lru_cache(maxsize=1)
def transaction_request() -> type[BaseModel]:
    """The ``TransactionEvent`` request model (built once)."""
    return model_from_avro(transaction_schema())


def to_event(request: BaseModel) -> dict[str, Any]:
    """The decoded-Avro dict the kernel scores: every field, timestamps as epoch ms."""
    event = dict(vars(request))  # the fields (extra="forbid"), without BaseModel.__iter__
    for name, value in event.items():
        if isinstance(value, datetime):
            event[name] = _epoch_ms(value)
    return event


def _epoch_ms(value: datetime) -> int:
    # Integer arithmetic on the timedelta: float seconds would round some millis away.
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
