"""The labels contract and the synthetic labels: they encode with the schema, decode
through the labels decoder, and look like an issuer's feeds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamer.cli.monitor import parse_when
from streamer.codec.wire import make_encoder
from streamer.dev.labels import DAY_MS, LabelMix, generate_labels
from streamer.dev.synth import generate_labeled, make_population
from streamer.errors import Rejection
from streamer.monitor.labels import Label, label_schema, make_label_decoder, to_label

START = 1_764_547_200_000  # 2025-12-01


@pytest.fixture(scope="module")
def labelled() -> tuple[list[dict[str, Any]], np.ndarray, list[dict[str, Any]]]:
    batch = generate_labeled(make_population(7, 2000, 200), 40_000, seed=3, start_ms=START)
    return batch.events, batch.labels, generate_labels(batch.events, batch.labels, seed=5)


def test_labels_follow_the_mix(
    labelled: tuple[list[dict[str, Any]], np.ndarray, list[dict[str, Any]]],
) -> None:
    events, fraud, labels = labelled
    is_fraud = {e["transaction_id"]: bool(f) for e, f in zip(events, fraud, strict=True)}
    kinds = [(is_fraud[x["transaction_id"]], x["label"], x["source"]) for x in labels]
    fraud_labelled = sum(f for f, _, _ in kinds)
    assert fraud_labelled / fraud.sum() == pytest.approx(0.85, abs=0.05), "some fraud never"
    assert any(not f and k == "CHARGEBACK" and s == "dispute" for f, k, s in kinds)
    assert all(k != "LEGITIMATE" for f, k, _ in kinds if f)
    legit = sum(not f for f, k, _ in kinds if k == "LEGITIMATE")
    assert legit / (len(events) - fraud.sum()) == pytest.approx(0.3, abs=0.02)
    assert len({x["transaction_id"] for x in labels}) == len(labels), "one label each"
    times = {e["transaction_id"]: e["event_time"] for e in events}
    delays = np.array([x["label_time"] - times[x["transaction_id"]] for x in labels]) / DAY_MS
    assert delays.min() > 0
    by_source = {s: np.median([d for d, x in zip(delays, labels, strict=True) if x["source"] == s])
                 for s in ("case-management", "chargebacks", "maturity")}  # fmt: skip
    assert by_source["case-management"] < by_source["chargebacks"] < by_source["maturity"]
    assert [x["label_time"] for x in labels] == sorted(x["label_time"] for x in labels)


def test_no_mix_no_labels() -> None:
    none = LabelMix(fraud_labelled=0, disputed=0, legitimate_confirmed=0)
    events = [{"transaction_id": "a", "card_id": "c", "event_time": 1}]
    assert generate_labels(events, [1], seed=1, mix=none) == []
    with pytest.raises(ValueError, match="2 fraud flags"):
        generate_labels(events, [1, 0], seed=1)


@pytest.mark.parametrize("fmt", ["single-object", "raw"])
def test_labels_round_trip_through_the_labels_decoder(
    fmt: str, labelled: tuple[list[dict[str, Any]], np.ndarray, list[dict[str, Any]]]
) -> None:
    encoder = make_encoder(fmt, schema=label_schema())  # type: ignore[arg-type]
    decoder = make_label_decoder(fmt)  # type: ignore[arg-type]
    for record in labelled[2][:50]:
        label = to_label(decoder.decode(encoder.encode(record)))  # type: ignore[arg-type]
        assert label == Label(
            record["transaction_id"], record["label"], record["label_time"], record["source"]
        )
        assert label.is_fraud == (record["label"] != "LEGITIMATE")
    assert isinstance(decoder.decode(b"\xc3\x01garbage"), Rejection)


def test_a_label_without_a_transaction_id_is_rejected() -> None:
    record = {"transaction_id": "", "label": "FRAUD", "label_time": 1, "source": "x"}
    assert isinstance(to_label(record), Rejection)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", 10_000_000_000 - 7 * DAY_MS),
        ("12h", 10_000_000_000 - 12 * 3_600_000),
        ("1700000000000", 1_700_000_000_000),
        ("2026-12-01", 1_796_083_200_000),
        ("2026-12-01T01:00:00+01:00", 1_796_083_200_000),
    ],
)
def test_times_are_ages_epoch_millis_or_iso(text: str, expected: int) -> None:
    assert parse_when(text, 10_000_000_000) == expected


def test_a_bad_time_is_a_usage_error() -> None:
    import typer

    with pytest.raises(typer.BadParameter, match="not a date"):
        parse_when("yesterday", 0)
