"""Synthetic histories with attacks: the attacks have the promised shape, the events are
valid TransactionEvents, the same seed gives the same history, a messy history has the
duplicates and out-of-order times the stream must survive, and the training features of
a history are exactly what the scoring kernel serves."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest

from streamer.dev import attacks, history_features, synth
from streamer.dev.attacks import AttackRates, History
from streamer.features.enrichment import OfflineVelocity
from streamer.features.layout import card_key, merchant_key, pack
from streamer.features.reference import currency_exponent
from streamer.model.registry import load_model
from streamer.scoring.kernel import ScoringKernel
from streamer.testing import InMemoryFeatures

REPO = Path(__file__).parents[2]
SCHEMA = REPO / "schemas" / "transaction_event.avsc"
START_MS = 1_767_225_600_000
MINUTE_MS = 60_000
PER_EUR = {h[0]: h[3] for h in synth._HOMES}


@pytest.fixture(scope="module")
def pop() -> synth.Population:
    return synth.make_population(5, n_cards=1500, n_merchants=300)


@pytest.fixture(scope="module")
def history(pop: synth.Population) -> History:
    rates = AttackRates(card_testing=8, account_takeover=8, bust_out=4, other=0.004)
    return attacks.make_history(pop, 9, seed=13, start_ms=START_MS, attacks_from_day=6, rates=rates)


def _groups(h: History, kind: str) -> dict[int, np.ndarray]:
    rows = np.flatnonzero(h.kind_of(kind))
    return {int(a): rows[h.attack_ids[rows] == a] for a in np.unique(h.attack_ids[rows])}


def _major(e: dict[str, Any]) -> float:
    exponent = currency_exponent(str(e["currency"]))
    return int(e["amount_minor"]) / 10.0**exponent


def test_every_kind_is_present_and_labelled(history: History) -> None:
    for kind in attacks.KINDS:
        assert history.kind_of(kind).sum() > 0, kind
    fraud = history.kinds != attacks.KINDS.index("normal")
    assert (history.labels == fraud).all()
    assert (history.attack_ids[~fraud] == -1).all()
    assert (history.attack_ids[fraud] >= 0).all()
    assert 0.005 < history.labels.mean() < 0.1


def test_events_are_sorted_valid_avro_with_synths_fields(history: History) -> None:
    fields = [f["name"] for f in json.loads(SCHEMA.read_text())["fields"]]
    assert all(list(e) == fields for e in history.events)
    times = [e["event_time"] for e in history.events]
    assert times == sorted(times)
    assert min(times) >= START_MS
    assert max(times) < START_MS + history.days * 86_400_000
    ids = [e["transaction_id"] for e in history.events]
    assert len(set(ids)) == len(ids)
    buf = io.BytesIO()
    schema = fastavro.parse_schema(json.loads(SCHEMA.read_text()))
    fastavro.writer(buf, schema, history.events, validator=True)


def test_card_testing_bursts_are_many_small_amounts_at_distinct_merchants_in_minutes(
    history: History,
) -> None:
    bursts = _groups(history, "card_testing")
    assert len(bursts) >= 20
    spans = []
    for rows in bursts.values():
        events = [history.events[i] for i in rows]
        assert 10 <= len(events) <= 30
        assert len({e["card_id"] for e in events}) == 1
        assert len({e["merchant_id"] for e in events}) == len(events)  # >= 10 distinct
        assert all(_major(e) <= 15.0 * PER_EUR[_home(history, e)] for e in events)
        assert all(e["channel"] == "ECOMMERCE" for e in events)
        assert list(history.attack_index[rows]) == list(range(len(events)))
        spans.append(events[-1]["event_time"] - events[0]["event_time"])
    assert max(spans) <= 25 * MINUTE_MS
    assert np.median(spans) <= 10 * MINUTE_MS


def _home(h: History, e: dict[str, Any]) -> str:
    card = h.population.card_ids.index(str(e["card_id"]))
    return synth.COUNTRIES[int(h.population.card_home[card])]


def test_account_takeover_is_a_new_country_and_an_amount_spike(history: History) -> None:
    takeovers = _groups(history, "account_takeover")
    assert len(takeovers) >= 20
    pop = history.population
    for rows in takeovers.values():
        events = [history.events[i] for i in rows]
        assert 1 <= len(events) <= 4
        card = pop.card_ids.index(events[0]["card_id"])
        countries = {e["merchant_country"] for e in events}
        assert len(countries) == 1
        (country,) = countries
        earlier = [
            e["merchant_country"]
            for e in history.events[: rows[0]]
            if e["card_id"] == events[0]["card_id"]
        ]
        assert country != synth.COUNTRIES[int(pop.card_home[card])]
        assert country not in earlier
        assert all(_major(e) >= 3.0 * pop.card_mean[card] * 0.999 for e in events)


def test_bust_out_rises_over_days_then_spends_big_within_hours(history: History) -> None:
    busts = _groups(history, "bust_out")
    assert len(busts) >= 10
    for rows in busts.values():
        events = [history.events[i] for i in rows]
        times = np.array([e["event_time"] for e in events])
        amounts = np.array([_major(e) for e in events])
        assert (times[-1] - times[0]) >= 2 * 86_400_000  # a ramp over days
        spree = times >= times[-1] - 3 * 3_600_000
        assert 5 <= spree.sum() <= 12
        assert amounts[spree].mean() > 1.5 * amounts[~spree].mean()


def test_same_seed_same_history_and_another_seed_differs(pop: synth.Population) -> None:
    a = attacks.make_history(pop, 2, seed=1, start_ms=START_MS)
    b = attacks.make_history(synth.make_population(5, 1500, 300), 2, seed=1, start_ms=START_MS)
    assert a.events == b.events
    assert (a.labels == b.labels).all()
    assert (a.attack_index == b.attack_index).all()
    c = attacks.make_history(pop, 2, seed=2, start_ms=START_MS)
    assert a.events != c.events


def test_messy_history_has_duplicates_and_out_of_order_times(pop: synth.Population) -> None:
    clean = attacks.make_history(pop, 3, seed=4, start_ms=START_MS)
    messy = attacks.make_history(pop, 3, seed=4, start_ms=START_MS, messy=True)
    ids = [e["transaction_id"] for e in messy.events]
    assert len(set(ids)) == len(clean)
    assert 0.04 < messy.duplicate.mean() < 0.06
    first: dict[str, dict[str, object]] = {}
    for e, dup in zip(messy.events, messy.duplicate.tolist(), strict=True):
        if dup:
            assert first[e["transaction_id"]] == e  # the same record, sent again later
        else:
            first[e["transaction_id"]] = e
    times = np.array([e["event_time"] for e in messy.events])
    back = np.diff(times) < 0
    assert back.mean() > 0.02
    assert (np.diff(times)[back] >= -6 * MINUTE_MS).all()


def test_attack_days_bound_where_attacks_start(pop: synth.Population) -> None:
    h = attacks.make_history(pop, 3, seed=6, start_ms=START_MS, attacks_from_day=2)
    card_testing = h.kind_of("card_testing")
    assert card_testing.any()
    day2 = START_MS + 2 * 86_400_000
    assert all(h.events[i]["event_time"] >= day2 for i in np.flatnonzero(card_testing))
    with pytest.raises(ValueError, match="attacks_from_day"):
        attacks.make_history(pop, 3, seed=6, start_ms=START_MS, attacks_from_day=3)


def test_training_features_equal_the_kernels_on_the_same_history() -> None:
    """The builder models/train.py trains on gives every event exactly the input the
    scoring kernel gives it (velocity state in memory, snapshot from the feature cache),
    batch by batch, on a messy history (duplicates, out-of-order times, attacks)."""
    model = load_model("fraud-gbt@2", REPO / "models")
    pop = synth.make_population(8, n_cards=300, n_merchants=80)
    rates = AttackRates(card_testing=20, account_takeover=20, bust_out=10, other=0.01)
    h = attacks.make_history(pop, 5, seed=9, start_ms=START_MS, rates=rates, messy=True)
    cards, merchants = history_features.snapshot_tables(pop, START_MS)
    snapshot = InMemoryFeatures(model)
    for i, card_id in enumerate(pop.card_ids[:-10]):  # the last ten cards: cache misses
        snapshot.redis.data[card_key("", card_id)] = pack(cards[i])
    for i, merchant_id in enumerate(pop.merchant_ids):
        snapshot.redis.data[merchant_key("", merchant_id)] = pack(merchants[i])
    kernel = ScoringKernel(model, OfflineVelocity(snapshot))
    served = []
    for start in range(0, len(h), 256):
        batch = h.events[start : start + 256]
        scored = kernel.score(batch, [(0, start + i) for i in range(len(batch))])
        assert scored.rows == list(range(len(batch)))
        assert scored.matrix is not None
        served.append(scored.matrix)

    card, merchant = history_features.snapshot_rows(pop, h.events, START_MS)
    missing = np.isin([e["card_id"] for e in h.events], pop.card_ids[-10:])
    assert missing.any()
    card[missing] = model.card_defaults
    built = history_features.feature_matrix(
        h.events, card, merchant, model.metadata.feature_names, card_defaults=model.card_defaults
    )
    assert np.array_equal(np.concatenate(served), built)
    assert h.duplicate.any()
    in_burst = h.kind_of("card_testing") & (h.attack_index >= 9)
    count_1h = built[:, list(model.metadata.feature_names).index("txn_count_1h")]
    assert (count_1h[in_burst] >= 9).mean() > 0.9  # the velocity state, not the snapshot
