"""Reason codes: exact contributions, the top three, the deny-list, and where they go.

The kernel tests run the shipped model (fraud-gbt@3, trained on card histories with
velocity attacks) through the stream's own kernel over an in-memory feature cache with
the velocity fold on, so the burst's velocity inputs are the stream's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.dev.demo_burst import burst_events
from streamer.errors import ConfigError
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import FeatureCache
from streamer.features.engineering import FEATURE_NAMES
from streamer.features.enrichment import OfflineVelocity
from streamer.model.explainer import TOLERANCE, onnx_margin_and_score
from streamer.model.registry import LoadedModel, load_model
from streamer.observability.metrics import Telemetry
from streamer.scoring.kernel import Scored, ScoringKernel
from streamer.scoring.reasons import (
    REASON_TABLE,
    TOP,
    ReasonBuilder,
    ReasonSettings,
    explained_rows,
    reason_settings,
)
from streamer.testing import InMemoryFeatures, InMemoryRedis, sample_event

MODELS = Path(__file__).resolve().parents[2] / "models"
T0 = 1_767_225_600_000 + 10 * 86_400_000
VELOCITY = {"VELOCITY_1H", "VELOCITY_24H", "VELOCITY_7D", "RAPID_SUCCESSION"}
AMOUNT_OR_COUNTRY = {
    "AMOUNT_SPIKE",
    "HIGH_AMOUNT",
    "MERCHANT_AMOUNT",
    "FOREIGN_MERCHANT",
    "COUNTRY_CHANGE",
}
CARDS = {f"card-de-{i}": {"home_country": "DE", "amount_mean_30d": 40.0} for i in range(40)}


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("fraud-gbt@3", MODELS)


def _kernel(model: LoadedModel, reasons: ReasonSettings | None = None) -> ScoringKernel:
    """The kernel over score-file's feature source: an in-memory snapshot, and the velocity
    state folded in memory over the events in order (as the stream folds a partition)."""
    cache = FeatureCache(
        InMemoryRedis(),  # type: ignore[arg-type]
        prefix="",
        card_defaults=model.card_defaults,
        merchant_defaults=model.merchant_defaults,
        breaker=CircuitBreaker(),
    )
    return ScoringKernel(model, OfflineVelocity(cache), reasons=reasons)


def _score(kernel: ScoringKernel, events: Sequence[dict[str, Any]]) -> Scored:
    return kernel.score(events, [(0, i) for i in range(len(events))], received_ms=T0 + 60_000)


def _foreign(i: int, amount_minor: int) -> dict[str, Any]:
    return sample_event(
        transaction_id=f"foreign-{i}",
        card_id=f"card-x-{i}",
        amount_minor=amount_minor,
        merchant_country="NG",
        channel="ECOMMERCE",
        entry_mode="MANUAL",
        card_present=False,
        event_time=T0,
    )


# -- the table and the pure ranking -------------------------------------------------------


def test_every_model_input_belongs_to_exactly_one_code() -> None:
    owners = [f for reason in REASON_TABLE for f in reason.features]
    assert sorted(owners) == sorted(FEATURE_NAMES)
    assert len({r.code for r in REASON_TABLE}) == len(REASON_TABLE)


def test_every_sentence_renders_from_input_values() -> None:
    values = dict.fromkeys(FEATURE_NAMES, 1.0)
    for reason in REASON_TABLE:
        assert reason.text(values).strip(), reason.code


@st.composite
def _contributions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, frozenset[str]]:
    n = draw(st.integers(1, 5))
    width = len(FEATURE_NAMES)
    floats = st.floats(-5, 5, allow_nan=False, width=32)
    flat = draw(st.lists(floats, min_size=n * (width + 1), max_size=n * (width + 1)))
    contributions = np.asarray(flat, dtype=np.float64).reshape(n, width + 1)
    values = np.abs(contributions[:, :width]).astype(np.float32) * 10
    deny = frozenset(draw(st.sets(st.sampled_from(FEATURE_NAMES), max_size=10)))
    return contributions, values, deny


@given(_contributions())
@settings(max_examples=150, deadline=None)
def test_top_reasons_are_the_largest_positive_codes_never_a_denied_input(
    drawn: tuple[np.ndarray, np.ndarray, frozenset[str]],
) -> None:
    contributions, values, deny = drawn
    builder = ReasonBuilder(FEATURE_NAMES, deny)
    at = {name: j for j, name in enumerate(FEATURE_NAMES)}
    for i, reasons in enumerate(builder.reasons(contributions, values)):
        sums = {
            r.code: sum(contributions[i, at[f]] for f in r.features if f not in deny)
            for r in REASON_TABLE
        }
        expected = sorted((s for s in sums.values() if s > 0), reverse=True)[:TOP]
        assert [r["contribution"] for r in reasons] == pytest.approx(expected)
        for reason in reasons:
            code = next(r for r in REASON_TABLE if r.code == reason["code"])
            assert reason["feature"] in code.features
            assert reason["feature"] not in deny
            assert reason["value"] == pytest.approx(float(values[i, at[reason["feature"]]]))
        assert len({r["code"] for r in reasons}) == len(reasons)


def test_which_rows_are_explained() -> None:
    decisions = np.array([0, 1, 2, 0], dtype=np.int8)
    assert explained_rows("flagged", decisions).tolist() == [1, 2]
    assert explained_rows("all", decisions).tolist() == [0, 1, 2, 3]
    assert explained_rows("off", decisions).tolist() == []


def test_a_deny_list_naming_no_input_is_refused() -> None:
    assert reason_settings("flagged", " hour_of_day, day_of_week ,").deny == {
        "hour_of_day",
        "day_of_week",
    }
    with pytest.raises(ConfigError, match="hour_of_dya"):
        reason_settings("flagged", "hour_of_dya")


# -- through the kernel --------------------------------------------------------------------


def test_a_card_testing_burst_is_declined_for_its_velocity(model: LoadedModel) -> None:
    scored = _score(_kernel(model), burst_events(T0))
    flagged = [r for r in scored.records if r["decision"] != "APPROVE"]
    assert len(flagged) >= 6
    for record in flagged:
        codes = {r["code"] for r in record["reasons"]}
        assert codes & VELOCITY, record["reasons"]
    last = {r["code"]: r for r in flagged[-1]["reasons"]}
    assert last["VELOCITY_1H"]["text"] == "11 transactions in the last hour"
    assert last["VELOCITY_1H"]["value"] == 11.0


def test_a_foreign_high_amount_gives_an_amount_or_country_reason(model: LoadedModel) -> None:
    events = [_foreign(i, amount) for i, amount in enumerate((150_000, 400_000, 900_000))]
    for record in _score(_kernel(model), events).records:
        assert record["decision"] != "APPROVE"
        codes = [r["code"] for r in record["reasons"]]
        assert set(codes) & AMOUNT_OR_COUNTRY, codes


def test_approvals_carry_no_reasons_unless_all_are_asked_for(model: LoadedModel) -> None:
    events = [*burst_events(T0)[:3], sample_event(transaction_id="plain", event_time=T0)]
    flagged = _score(_kernel(model), events).records
    assert [r["reasons"] is None for r in flagged] == [r["decision"] == "APPROVE" for r in flagged]
    every = _score(_kernel(model, ReasonSettings("all")), events).records
    assert all(isinstance(r["reasons"], list) for r in every)
    off = _score(_kernel(model, ReasonSettings("off")), events).records
    assert all(r["reasons"] is None for r in off)


def test_denied_inputs_never_appear(model: LoadedModel) -> None:
    deny = frozenset({"seconds_since_last_txn", "card_present", "channel", "entry_mode"})
    records = _score(_kernel(model, ReasonSettings("all", deny)), burst_events(T0)).records
    seen = {r["feature"] for record in records for r in record["reasons"]}
    assert seen
    assert not seen & deny
    assert not {r["code"] for rec in records for r in rec["reasons"]} & {"RAPID_SUCCESSION"}


_countries = st.sampled_from(["DE", "FR", "NG", "US", "GB"])


@st.composite
def _events(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 12))
    return [
        sample_event(
            transaction_id=f"drawn-{i}",
            card_id=draw(st.sampled_from([*CARDS, "card-unknown"])),
            merchant_id=f"merchant-{draw(st.integers(0, 30)):05d}",
            amount_minor=draw(st.integers(1, 5_000_000)),
            merchant_country=draw(_countries),
            channel=draw(st.sampled_from(["POS", "ECOMMERCE", "ATM", "MOTO"])),
            card_present=draw(st.booleans()),
            three_ds=draw(st.sampled_from([None, True, False])),
            mcc=draw(st.sampled_from([5411, 5732, 7995, 6051, 4829])),
            device_id=draw(st.sampled_from([None, "device-1"])),
            event_time=T0 + draw(st.integers(-86_400_000, 0)),
        )
        for i in range(n)
    ]


@given(_events())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_contributions_add_up_to_the_onnx_margin_on_drawn_events(
    model: LoadedModel, events: list[dict[str, Any]]
) -> None:
    kernel = _kernel(model, ReasonSettings("all"))
    scored = _score(kernel, events)
    assert scored.matrix is not None
    assert model.explainer is not None
    contributions = model.explainer.contributions(scored.matrix)
    margin, probability = onnx_margin_and_score(model.onnx_bytes, model.metadata, scored.matrix)
    assert np.max(np.abs(contributions.sum(axis=1) - margin)) <= TOLERANCE
    assert np.max(np.abs(probability - scored.scores)) <= TOLERANCE
    at = {name: j for j, name in enumerate(model.metadata.feature_names)}
    for row, record in enumerate(scored.records):
        for reason in record["reasons"]:
            code = next(r for r in REASON_TABLE if r.code == reason["code"])
            total = sum(contributions[row, at[f]] for f in code.features)
            assert reason["contribution"] == pytest.approx(total, abs=1e-12)


def test_the_scoring_models_reasons_are_counted_by_version_decision_and_code(
    model: LoadedModel,
) -> None:
    telemetry = Telemetry()
    kernel = _kernel(model)
    kernel.observer = telemetry
    scored = _score(kernel, burst_events(T0))
    expected: dict[tuple[str, str, str], int] = {}
    for record in scored.records:
        for reason in record["reasons"] or ():
            key = (model.metadata.version, record["decision"], reason["code"])
            expected[key] = expected.get(key, 0) + 1
    assert dict(telemetry.reasons) == expected
    assert expected


def test_a_model_without_an_explainer_scores_without_reasons() -> None:
    first = load_model("fraud-gbt@1", MODELS)
    assert first.explainer is None
    records = _score(_kernel(first, ReasonSettings("all")), burst_events(T0)).records
    assert all(r["reasons"] is None for r in records)


def test_a_rows_reasons_do_not_depend_on_the_batch_around_it(model: LoadedModel) -> None:
    """The stream, the API and score-file batch differently: the same bits every time."""
    cards = {f"card-x-{i}": {"home_country": "DE", "amount_mean_30d": 35.0} for i in range(60)}
    kernel = ScoringKernel(
        model, InMemoryFeatures(model, cards=cards), reasons=ReasonSettings("all")
    )
    events = [_foreign(i, 2_000 + 37_000 * i) for i in range(60)]
    together = [r["reasons"] for r in _score(kernel, events).records]
    alone = [_score(kernel, [event]).records[0]["reasons"] for event in events]
    assert together == alone
