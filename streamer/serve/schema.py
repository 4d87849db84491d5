"""The request models, generated from ``schemas/transaction_event.avsc`` (never written twice).

Each Avro field becomes a pydantic field with the same name, type, default and ``doc``
(the OpenAPI description), so a field added to the schema appears in the API and its
documentation with no change here. Types are strict: JSON ``"5411"`` is not an ``int``,
``true`` is not a ``long`` and ``54.5`` neither; ``54.0`` is the integer 54, as JSON Schema's
``integer`` (the document's word) defines it. ``event_time`` takes two
forms: epoch milliseconds (an integer) or an RFC 3339 date-time with a zone (``Z`` or
``±hh:mm``), converted to epoch ms, the decoded-Avro shape the kernel takes.

The value rules of ``scoring.limits`` (id lengths, currencies, amount and mcc ranges,
country codes, event time) are not checked here: ``scoring.validation`` checks them per
event, as the stream does, and names the class. ``transaction_request`` states them in the
OpenAPI document (``serve.rules``); ``batched_transaction``, the element of a batch, does
not, since a batch answers 200 with a rejected result for an event that breaks one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    create_model,
)
from pydantic_core import PydanticCustomError

from streamer.codec.schemas import Schema, transaction_schema
from streamer.serve import rules

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def _whole(value: Any) -> Any:
    """A JSON number with a zero fraction (``54.0``, ``1e3``) as the integer it is; anything
    else unchanged, for ``StrictInt`` to take or refuse. Past 2**53 such a float may not
    spell its integer exactly, but every integer rule here refuses values that large."""
    if value.__class__ is float and value.is_integer():
        return int(value)
    return value


def _json_int(low: int, high: int) -> Any:
    # The bounds on StrictInt itself, the whole-number step around it: bounds put outside
    # a validator would leave the JSON Schema as unknown "ge"/"le" keys, not min/max.
    return Annotated[StrictInt, Field(ge=low, le=high), BeforeValidator(_whole)]


_PRIMITIVES: dict[str, Any] = {
    "string": StrictStr,
    "boolean": StrictBool,
    "int": _json_int(*INT32),
    "long": _json_int(*INT64),
    "float": StrictFloat | StrictInt,
    "double": StrictFloat | StrictInt,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_ms_of(text: str) -> int:
    """Epoch ms of an RFC 3339 string (its form already matched ``rules.RFC3339``)."""
    try:
        return _epoch_ms(datetime.fromisoformat(text))
    except ValueError as exc:  # a day the month does not have: the form matched
        # A fixed message: fromisoformat's own may quote the value, which errors never do.
        raise PydanticCustomError(
            "datetime_parsing", "Input should be a date that exists (a day of its month)"
        ) from exc


def _timestamp_form(value: Any) -> str | None:
    if value.__class__ is int or (value.__class__ is float and value.is_integer()):
        return "epoch_ms"
    return "rfc3339" if isinstance(value, str) else None


EpochMs = Annotated[StrictInt, Field(ge=INT64[0], le=INT64[1]), BeforeValidator(_whole)]
Rfc3339 = Annotated[
    StrictStr,
    Field(pattern=rules.RFC3339, json_schema_extra={"format": "date-time"}),
    AfterValidator(_epoch_ms_of),
]
Timestamp = Annotated[
    Annotated[EpochMs, Tag("epoch_ms")] | Annotated[Rfc3339, Tag("rfc3339")],
    Discriminator(
        _timestamp_form,
        custom_error_type="timestamp_type",
        custom_error_message="Input should be epoch milliseconds (an integer) or an RFC 3339 "
        "date-time string with a zone",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Stated(_Strict):
    model_config = ConfigDict(json_schema_extra=rules.event_schema_extra)


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


def model_from_avro(
    schema: Schema, name: str | None = None, *, stated: bool = False, doc: str | None = None
) -> type[BaseModel]:
    """A frozen pydantic model with one field per Avro field (defaults and docs kept).

    With ``stated``, each field's OpenAPI schema and description also state the value
    rules ``scoring.validation`` enforces (``serve.rules``); validation is the same."""
    fields: dict[str, Any] = {}
    for field in schema["fields"]:
        kind, description = python_type(field["type"]), field.get("doc")
        if stated:
            kind, description = rules.stated(field["name"], kind, description)
        fields[field["name"]] = (kind, Field(field.get("default", ...), description=description))
    model: type[BaseModel] = create_model(
        name or str(schema["name"]).rsplit(".", 1)[-1],
        __base__=_Stated if stated else _Strict,
        __doc__=doc or schema.get("doc"),
        **fields,
    )
    return model


@lru_cache(maxsize=1)
def transaction_request() -> type[BaseModel]:
    """The ``TransactionEvent`` request model of ``/v1/score``, its rules stated (built once)."""
    return model_from_avro(transaction_schema(), stated=True)


@lru_cache(maxsize=1)
def batched_transaction() -> type[BaseModel]:
    """An element of a batch: ``TransactionEvent``'s fields and types; its value rules come
    back per event as a rejected result, so the schema does not state them."""
    return model_from_avro(transaction_schema(), "BatchedTransactionEvent", doc=rules.BATCHED_DOC)


def to_event(request: BaseModel) -> dict[str, Any]:
    """The decoded-Avro dict the kernel scores: every field, timestamps as epoch ms."""
    return dict(vars(request))  # the fields (extra="forbid"), without BaseModel.__iter__


def _epoch_ms(value: datetime) -> int:
    # Integer arithmetic on the timedelta: float seconds would round some millis away.
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
