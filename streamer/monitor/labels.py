"""The labels contract: ``FraudLabel`` records (``schemas/fraud_label.avsc``) and what they mean.

A label says what a scored transaction turned out to be, days or weeks after it was
scored. ``FRAUD`` (a confirmed case) and ``CHARGEBACK`` (the issuer charged it back) count
as fraud; ``LEGITIMATE`` does not. Labels are framed as the input topic is
(``STREAMER_INPUT_FORMAT``), because the systems that send them are upstream systems too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamer.codec.schemas import Schema, load_schema
from streamer.codec.wire import Decoder, WireFormat, make_decoder
from streamer.errors import Rejection

LABEL_KINDS: tuple[str, ...] = ("FRAUD", "CHARGEBACK", "LEGITIMATE")
"""Label symbols in schema order; a label's code is its index."""
FRAUD_CODES = frozenset({0, 1})
"""Codes of the kinds that count as fraud (FRAUD, CHARGEBACK)."""


def label_schema() -> Schema:
    """The current ``FraudLabel`` schema (the labels decoder's reader schema)."""
    return load_schema("fraud_label")


@dataclass(frozen=True, slots=True)
class Label:
    """One decoded label: the fields the monitor keeps (the rest stays on the topic)."""

    transaction_id: str
    label: str
    label_time_ms: int
    source: str

    @property
    def code(self) -> int:
        return LABEL_KINDS.index(self.label)

    @property
    def is_fraud(self) -> bool:
        return self.code in FRAUD_CODES


def to_label(record: dict[str, Any]) -> Label | Rejection:
    """The ``Label`` in a decoded record, or why it cannot be used (an empty id)."""
    transaction_id = record["transaction_id"]
    if not transaction_id:
        return Rejection("EmptyTransactionId", "label without a transaction_id")
    return Label(transaction_id, record["label"], int(record["label_time"]), record["source"])


def make_label_decoder(
    fmt: WireFormat,
    *,
    registry: Any = None,
    max_bytes: int = 1_000_000,
    unknown_id_ttl_s: float = 1.0,
) -> Decoder:
    """A decoder of labels framed as ``fmt``: ``FraudLabel`` records, times in epoch millis."""
    return make_decoder(
        fmt,
        reader_schema=label_schema(),
        registry=registry,
        max_bytes=max_bytes,
        unknown_id_ttl_s=unknown_id_ttl_s,
    )
