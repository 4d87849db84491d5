"""The synthetic generator: reproducible, schema-valid, realistic enough to learn from."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import numpy as np
import pytest

from streamer import features as f
from streamer.dev import synth

SCHEMA = Path(__file__).parents[2] / "schemas" / "transaction_event.avsc"
START_MS = 1_700_000_000_000


@pytest.fixture(scope="module")
def pop() -> synth.Population:
    return synth.make_population(11, n_cards=2000, n_merchants=300)


@pytest.fixture(scope="module")
def labeled(pop: synth.Population) -> synth.LabeledEvents:
    return synth.generate_labeled(pop, 60_000, seed=5, start_ms=START_MS)


def test_same_seed_same_events(pop: synth.Population) -> None:
    a = synth.generate_events(pop, 500, seed=3, start_ms=START_MS)
    b = synth.generate_events(synth.make_population(11, 2000, 300), 500, seed=3, start_ms=START_MS)
    assert a == b
    c = synth.generate_events(pop, 500, seed=4, start_ms=START_MS)
    assert a != c


def test_events_are_valid_avro_with_every_field(labeled: synth.LabeledEvents) -> None:
    schema = fastavro.parse_schema(json.loads(SCHEMA.read_text()))
    names = [field["name"] for field in json.loads(SCHEMA.read_text())["fields"]]
    events = labeled.events[:2000]
    assert all(list(e) == names for e in events)
    buf = io.BytesIO()
    fastavro.writer(buf, schema, events, validator=True)
    buf.seek(0)
    decoded = list(fastavro.reader(buf, return_record_name=True))
    assert decoded[0]["transaction_id"] == events[0]["transaction_id"]
    assert all(isinstance(e["event_time"], int) for e in events)
    assert all(e["amount_minor"] > 0 for e in events)


def test_transaction_ids_are_unique_uuid4(labeled: synth.LabeledEvents) -> None:
    ids = [e["transaction_id"] for e in labeled.events]
    assert len(set(ids)) == len(ids)
    assert all(i[14] == "4" for i in ids[:100])


def test_fraud_rate_is_one_to_two_percent(labeled: synth.LabeledEvents) -> None:
    assert 0.01 <= labeled.labels.mean() <= 0.02


def test_fraud_looks_different_but_not_trivially(labeled: synth.LabeledEvents) -> None:
    cols = f.event_columns(labeled.events)
    names = ["is_foreign", "txn_count_1h", "amount_ratio", "is_night"]
    x = f.assemble(cols, labeled.card_rows, labeled.merchant_rows, names)
    fraud = labeled.labels == 1
    for j, name in enumerate(names):
        assert x[fraud, j].mean() > 1.5 * x[~fraud, j].mean(), name
    # Some fraud shows no pattern at all, and some genuine events are foreign.
    assert (x[fraud, 0] == 0).mean() > 0.3
    assert (x[~fraud, 0] == 1).mean() > 0.02


def test_feature_rows_align_with_events(labeled: synth.LabeledEvents) -> None:
    n = len(labeled.events)
    assert labeled.card_rows.shape == (n, len(f.CARD_FIELDS))
    assert labeled.merchant_rows.shape == (n, len(f.MERCHANT_FIELDS))
    home = labeled.card_rows[:, f.CARD_INDEX["home_country"]]
    currency = np.array([e["currency"] for e in labeled.events])
    assert set(currency[home == f.country_code("JP")]) == {"JPY"}
    last = labeled.card_rows[:, f.CARD_INDEX["last_txn_time"]]
    times = np.array([e["event_time"] for e in labeled.events]) / 1000
    assert (last <= times).all()


def test_rate_gives_a_poisson_stream(pop: synth.Population) -> None:
    events = synth.generate_events(pop, 5000, seed=1, start_ms=START_MS, rate_per_s=1000.0)
    times = np.array([e["event_time"] for e in events])
    assert (np.diff(times) >= 0).all()
    assert 4.0 < (times[-1] - START_MS) / 1000 < 6.0


def test_snapshot_features_cover_the_population(pop: synth.Population) -> None:
    cards = synth.card_features(pop, START_MS)
    merchants = synth.merchant_features(pop)
    assert tuple(cards) == f.CARD_FIELDS
    assert tuple(merchants) == f.MERCHANT_FIELDS
    assert all(v.shape == (len(pop.card_ids),) for v in cards.values())
    assert all(v.shape == (len(pop.merchant_ids),) for v in merchants.values())
    assert (cards["last_txn_time"] <= START_MS / 1000).all()
    compromised = pop.card_compromised
    assert (
        cards["txn_count_1h"][compromised].mean() > 3 * cards["txn_count_1h"][~compromised].mean()
    )


@pytest.mark.parametrize(("n_cards", "n_merchants"), [(1, 1), (3, 5), (50, 10)])
def test_tiny_populations_still_generate(n_cards: int, n_merchants: int) -> None:
    pop = synth.make_population(1, n_cards=n_cards, n_merchants=n_merchants)
    events = synth.generate_events(pop, 50, seed=1, start_ms=START_MS)
    assert {e["merchant_id"] for e in events} <= set(pop.merchant_ids)
    assert {e["card_id"] for e in events} <= set(pop.card_ids)
