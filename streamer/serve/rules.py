"""The value rules of ``scoring.limits`` as the OpenAPI document states them.

``scoring.validation`` enforces the rules; this module only writes them into the request
schema (JSON Schema keywords on each field, and the per-currency amount limit as
``if``/``then`` on the event) and into each field's description, with the rejection class a
broken rule gets. Every number is read from ``scoring.limits``, so the document and the
checks cannot drift. The rule that moves with the server's clock (``EventTimeInFuture``)
has no static schema: the description states it and the 422 body names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from streamer.scoring import limits

_DATE = "-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?"
_ZONE = "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
_YEAR = "([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"  # 0001 to 9999, as Python
RFC3339 = f"^{_YEAR}{_DATE}{_TIME}{_ZONE}$"
"""The date-time form ``event_time`` takes: RFC 3339 with ``T``, a zone, no leap second,
at most nanoseconds (ASCII digits only: ``\\d`` would match other scripts' digits)."""
RFC3339_FROM_2000 = f"^[2-9][0-9]{{3}}{_DATE}{_TIME}{_ZONE}$"
"""The same form from the year 2000 on (``limits.MIN_EVENT_TIME_MS`` is 2000-01-01Z)."""

BATCHED_DOC = (
    "A TransactionEvent in a batch: the same fields and types. The value rules that "
    "TransactionEvent states (ids, currency, amount, event time, mcc, country) are checked "
    "per event: an event that breaks one comes back as a rejected result naming its class, "
    "beside the other events' scores, and the batch still answers 200."
)


@dataclass(frozen=True)
class Stated:
    """JSON Schema keywords the document states for a field (per JSON type of its value),
    which ``scoring.validation`` rather than pydantic enforces."""

    by_type: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        keywords = {kind: dict(words) for kind, words in self.by_type}
        for branch in [schema, *schema.get("anyOf", ()), *schema.get("oneOf", ())]:
            branch.update(keywords.get(branch.get("type", ""), {}))
        return schema


def _stated(**by_type: dict[str, Any]) -> Stated:
    return Stated(tuple((kind, tuple(words.items())) for kind, words in by_type.items()))


def _amount_text() -> str:
    limits_by_group = [
        f"{limit:,} for {codes[0] if len(codes) == 1 else ', '.join(codes[:3]) + '…'}"
        for limit, codes in limits.currencies_by_max_amount().items()
    ]
    return (
        f"From 1 (else 422 AmountNotPositive) to {limits.MAX_AMOUNT_MAJOR:,} major units of "
        f"`currency` (else 422 AmountOutOfRange): {'; '.join(limits_by_group)}, as the "
        "event's if/then/else chain states per currency exponent."
    )


def _rules() -> dict[str, tuple[Stated, str]]:
    """Per field: the keywords stated and the sentence added to its description."""
    ids = f"At most {limits.MAX_ID_LENGTH} characters (else 422 IdTooLong)."
    future_s = limits.MAX_FUTURE_MS // 1000
    table: dict[str, tuple[Stated, str]] = {
        name: (
            _stated(string={"minLength": 1, "maxLength": limits.MAX_ID_LENGTH}),
            f"Not empty (else 422 MissingId). {ids}",
        )
        for name in limits.REQUIRED_IDS
    }
    table |= {
        name: (_stated(string={"maxLength": limits.MAX_ID_LENGTH}), ids)
        for name in limits.OPTIONAL_IDS
    }
    return table | {
        "currency": (
            _stated(string={"enum": list(limits.CURRENCIES)}),
            "One of the ISO 4217 codes listed (else 422 UnknownCurrency).",
        ),
        "amount_minor": (
            _stated(integer={"minimum": 1, "maximum": max(limits.currencies_by_max_amount())}),
            _amount_text(),
        ),
        "mcc": (
            _stated(integer={"minimum": limits.MIN_MCC, "maximum": limits.MAX_MCC}),
            f"{limits.MIN_MCC} to {limits.MAX_MCC} (else 422 InvalidMcc).",
        ),
        "merchant_country": (
            _stated(string={"pattern": limits.COUNTRY_PATTERN}),
            "Two ASCII capital letters (else 422 InvalidCountry).",
        ),
        "event_time": (
            _stated(
                integer={"minimum": limits.MIN_EVENT_TIME_MS},
                string={"pattern": RFC3339_FROM_2000},
            ),
            "Epoch milliseconds (an integer) or an RFC 3339 date-time with a zone (Z or "
            "±hh:mm, no leap second). From 2000-01-01T00:00:00Z (else 422 "
            "EventTimeOutOfRange: a 2000-01-01 string with a positive offset can fall "
            f"before it) to at most {future_s:,} s ahead of the server's clock (else 422 "
            "EventTimeInFuture; no static schema can state a bound that moves with the clock).",
        ),
    }


_RULES = _rules()


def stated(name: str, kind: Any, description: str | None) -> tuple[Any, str | None]:
    """``kind`` and ``description`` of field ``name`` with its rules stated, if it has any."""
    if name not in _RULES:
        return kind, description
    keywords, sentence = _RULES[name]
    return Annotated[kind, keywords], f"{description} {sentence}" if description else sentence


def event_schema_extra(schema: dict[str, Any]) -> None:
    """The per-currency amount limit as one ``if``/``then``/``else`` chain over the ISO 4217
    exponents (a chain rather than ``allOf`` of conditions: schemathesis' coverage phase
    follows a chain, and draws no boundary cases for the event under the ``allOf`` form)."""
    rule: dict[str, Any] = {}
    for limit, codes in reversed(limits.currencies_by_max_amount().items()):
        then = {"properties": {"amount_minor": {"maximum": limit}}}
        if not rule:
            rule = then  # the largest limit: the field's own maximum, the chain's last else
            continue
        currency = {"properties": {"currency": {"enum": list(codes)}}, "required": ["currency"]}
        rule = {"if": currency, "then": then, "else": rule}
    schema.update(rule)
