"""The output tensors of an inference: one element per request row, in the rows' order. Pure.

A row the kernel rejected (a validation rule, or scoring it alone failed) keeps its place:
``decision`` is ``REJECTED``, ``score`` NaN (``null`` in JSON), ``error_class`` the class the
stream would have put on its dead letter and ``error`` its message; the other rows are
scored. One bad transaction in a batch of 500 does not cost the other 499 their answer,
and every output stays aligned with the inputs, as ``/v1/score:batch`` answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamer.errors import Rejection
from streamer.serve.batching import Outcome

REJECTED = "REJECTED"
NAN = math.nan

OUTPUTS: tuple[tuple[str, str], ...] = (
    ("score", "FP64"),
    ("decision", "BYTES"),
    ("model_version", "BYTES"),
    ("feature_status", "BYTES"),
    ("review_threshold", "FP64"),
    ("decline_threshold", "FP64"),
    ("shadow_score", "FP64"),
    ("shadow_decision", "BYTES"),
    ("shadow_model_version", "BYTES"),
    ("transaction_id", "BYTES"),
    ("error_class", "BYTES"),
    ("error", "BYTES"),
)
"""Every output tensor (name, datatype), each of shape [N]. Shadow outputs are NaN/empty
when no shadow model is set; ``error_class``/``error`` are empty for a scored row."""

_DATATYPES = dict(OUTPUTS)


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    values: list[Any]


def _row(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Rejection):
        return {"decision": REJECTED, "error_class": outcome.error_class, "error": outcome.message}
    return outcome


def _value(row: dict[str, Any], name: str, datatype: str) -> Any:
    value = row.get(name)
    if value is None:
        return NAN if datatype == "FP64" else ""
    return value


def unknown_outputs(requested: Sequence[str]) -> list[str]:
    """The names in ``requested`` that are not outputs of the model."""
    return [name for name in requested if name not in _DATATYPES]


def output_tensors(
    outcomes: Sequence[Outcome], transaction_ids: Sequence[str], requested: Sequence[str]
) -> list[OutputTensor]:
    """The ``requested`` outputs (all when empty), in the order requested."""
    rows = [_row(o) for o in outcomes]
    for row, transaction_id in zip(rows, transaction_ids, strict=True):
        if row.get("transaction_id") is None:
            row["transaction_id"] = transaction_id
    names = list(requested) or [name for name, _ in OUTPUTS]
    return [
        OutputTensor(name, _DATATYPES[name], [_value(r, name, _DATATYPES[name]) for r in rows])
        for name in names
    ]
