"""Schemathesis hooks for the contract test (loaded with ``SCHEMATHESIS_HOOKS``).

One check replaces schemathesis' ``positive_data_acceptance``, stricter where it can be:
a request valid by the document is answered with one of that check's expected statuses
(2xx, or 401/403/404: a valid body sent without a key), except for the one rule no static schema
can state (``limits.RELATIVE_TO_NOW``: an event time more than an hour ahead of the server's
clock), which the field's description states and the 422 body names; and a 2000-01-01
``event_time`` string with a positive offset, which falls before 2000-01-01Z (its
description says so).

A batch (``BatchedTransactionEvent``) states the types only: its events answer per event.
So for every batch answered 200, positive or negative case alike, each event is checked
against the ``TransactionEvent`` schema of the same document: an event it admits is
scored (or rejected for the excused reasons above), an event it refuses is rejected. The
built-in checks see only the status, 200 for any batch.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema_rs
import schemathesis

from streamer.scoring.limits import RELATIVE_TO_NOW

NEW_YEAR_2000 = "2000-01-01T"


def _excused(error_class: Any, event: Any) -> bool:
    """Whether a valid ``event`` may be refused with ``error_class`` (see the module)."""
    if error_class in RELATIVE_TO_NOW:
        return True
    event_time = event.get("event_time") if isinstance(event, dict) else None
    return (
        error_class == "EventTimeOutOfRange"
        and isinstance(event_time, str)
        and event_time.startswith(NEW_YEAR_2000)
        and "+" in event_time[len(NEW_YEAR_2000) :]
    )


@cache
def _event_validator(document: str) -> Any:
    schema = json.loads(document)["components"]["schemas"]["TransactionEvent"]
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def _check_batch(case: Any, results: list[dict[str, Any]]) -> None:
    """Each event of a batch answered 200: scored iff ``TransactionEvent`` admits it."""
    document = json.dumps(case.operation.schema.raw_schema, sort_keys=True)
    valid = _event_validator(document).is_valid
    for event, result in zip(case.body["events"], results, strict=True):
        if valid(event):
            if result["status"] != "scored" and not _excused(result["error_class"], event):
                raise AssertionError(f"a valid event was rejected in a batch: {result}")
        elif result["status"] == "scored":
            raise AssertionError(f"an event TransactionEvent refuses was scored: {event!r}")


def _body(response: schemathesis.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _expected(status: int, expected: list[str]) -> bool:
    """Whether ``status`` is one of ``expected`` ("2xx" style ranges or exact codes)."""
    code = str(status)
    return any(code == want or (want.endswith("xx") and code[0] == want[0]) for want in expected)


@schemathesis.check
def valid_requests_are_accepted(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Any
) -> bool | None:
    """``positive_data_acceptance`` with the excuses the document states (module doc)."""
    body = _body(response)
    if case.path == "/v1/score:batch" and response.status_code == 200:
        _check_batch(case, body["results"])
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if _expected(response.status_code, ctx.config.positive_data_acceptance.expected_statuses):
        return None
    error_class = body.get("error_class") if isinstance(body, dict) else None
    if response.status_code == 422 and _excused(error_class, case.body):
        return None
    raise AssertionError(
        f"valid data should have been accepted: {response.status_code} {response.text[:300]}"
    )
