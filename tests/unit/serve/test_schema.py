"""The request model is the Avro schema's: same fields, types, defaults and docs; strict
types on the wire; ``event_time`` as epoch ms or RFC 3339, nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from streamer.codec.schemas import transaction_schema
from streamer.serve.schema import batched_transaction, to_event, transaction_request
from streamer.testing import sample_event

Model = transaction_request()


def test_every_avro_field_is_a_request_field_with_its_doc() -> None:
    schema = Model.model_json_schema()
    avro = transaction_schema()["fields"]
    assert list(schema["properties"]) == [f["name"] for f in avro]
    for field in avro:  # the doc, then the rules the document states for the field
        assert schema["properties"][field["name"]]["description"].startswith(field["doc"])
    required = {f["name"] for f in avro if "default" not in f}
    assert set(schema["required"]) == required


@pytest.mark.parametrize(
    ("event_time", "epoch_ms"),
    [
        (1_764_000_000_123, 1_764_000_000_123),
        ("2025-11-24T16:00:00.123Z", 1_764_000_000_123),
        ("2025-11-24T17:00:00.123+01:00", 1_764_000_000_123),
        ("2025-11-24T16:00:00.123999Z", 1_764_000_000_123),  # below a millisecond: dropped
        ("2025-11-24T16:00:00.123999999Z", 1_764_000_000_123),  # nanoseconds
        ("2025-11-24T04:30:00.123-11:30", 1_764_000_000_123),
        (1_764_000_000_123.0, 1_764_000_000_123),  # a whole number is an integer in JSON
        (1e12, 1_000_000_000_000),
    ],
)
def test_event_time_as_epoch_ms_or_iso8601(event_time: Any, epoch_ms: int) -> None:
    event = to_event(
        Model.model_validate_json(json.dumps({**sample_event(), "event_time": event_time}))
    )
    assert event["event_time"] == epoch_ms
    assert event == {**sample_event(), "event_time": epoch_ms}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mcc", "5411"),
        ("mcc", 54.5),
        ("mcc", 2**31),
        ("mcc", 2.0**31),
        ("amount_minor", 2**63),
        ("amount_minor", True),
        ("amount_minor", "100"),
        ("amount_minor", 1e300),
        ("card_present", "true"),
        ("card_present", 1),
        ("channel", "pos"),
        ("transaction_id", 7),
        ("three_ds", "yes"),
        ("event_time", "2025-11-24T16:00:00"),  # no zone: ambiguous
        ("event_time", "yesterday"),
        ("event_time", 2.5890419884777833e-42),  # a fraction is no epoch millisecond
        ("event_time", 1_764_000_000_123.5),
        ("event_time", "1764000000123"),  # no string of digits as a number
        ("event_time", True),
        ("event_time", None),
        ("event_time", "2025-02-29T16:00:00Z"),  # a day February 2025 does not have
        ("event_time", "2025-12-31T23:59:60Z"),  # no leap second
        ("event_time", "2025-11-24t16:00:00z"),
        ("event_time", "2025-11-24 16:00:00Z"),
        ("event_time", "2025-11-24T16:00:00+0100"),
        ("event_time", "0000-01-01T00:00:00Z"),
        ("event_time", "\uff12\uff10\uff12\uff15-11-24T16:00:00Z"),  # fullwidth digits
        ("event_time", "2025-11-24T16:00:00.1234567890Z"),  # past nanoseconds
    ],
)
def test_wrong_types_are_refused_as_avro_would(field: str, value: Any) -> None:
    for model in (Model, batched_transaction()):
        with pytest.raises(ValidationError) as caught:
            model.model_validate_json(json.dumps({**sample_event(), field: value}))
        assert caught.value.errors()[0]["loc"][0] == field


def test_optional_fields_take_the_schema_defaults_and_unknown_fields_are_refused() -> None:
    minimal = {k: v for k, v in sample_event().items() if k not in ("three_ds", "entry_mode")}
    event = to_event(Model.model_validate_json(json.dumps(minimal)))
    assert event["three_ds"] is None
    assert event["entry_mode"] == "UNKNOWN"
    with pytest.raises(ValidationError):
        Model.model_validate_json(json.dumps({**sample_event(), "pan": "4111111111111111"}))
