"""The scoring kernel: one flow for the stream, files and anything else that scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamer import ScoringKernel, load_model
from streamer.features.engineering import assemble, event_columns
from streamer.model.registry import LoadedModel, ModelMetadata
from streamer.model.scorer import Scorer
from streamer.scoring.decisions import DECISIONS
from streamer.testing import InMemoryFeatures, sample_event

REPO = Path(__file__).resolve().parents[2]


def expected_decision(score: float, metadata: ModelMetadata) -> str:
    """The decision the model's own thresholds give ``score`` (inclusive; NaN reviewed)."""
    t = metadata.thresholds
    if np.isnan(score):
        return "REVIEW"
    return "DECLINE" if score >= t.decline else "REVIEW" if score >= t.review else "APPROVE"


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("fraud-gbt", REPO / "models")


def test_scores_equal_a_direct_model_run_on_the_same_features(model: LoadedModel) -> None:
    features = InMemoryFeatures(
        model, cards={f"card-{i}": {"txn_count_1h": i} for i in range(5)}, merchants={"m": {}}
    )
    events = [
        sample_event(transaction_id=f"t{i}", card_id=f"card-{i % 7}", merchant_id="m",
                     amount_minor=1_000 * (i + 1))
        for i in range(40)
    ]  # fmt: skip
    scored = ScoringKernel(model, features).score(events, [(0, i) for i in range(40)])

    fetched = features.fetch([e["card_id"] for e in events], [e["merchant_id"] for e in events])
    matrix = assemble(
        event_columns(events), fetched.card, fetched.merchant, model.metadata.feature_names
    )
    direct = Scorer(model).score(matrix)
    assert scored.rows == list(range(40))
    np.testing.assert_allclose([r["score"] for r in scored.records], direct, atol=1e-9)
    assert [r["transaction_id"] for r in scored.records] == [e["transaction_id"] for e in events]
    assert [r["source_offset"] for r in scored.records] == list(range(40))
    statuses = {r["card_id"]: r["feature_status"] for r in scored.records}
    assert statuses["card-1"] == "COMPLETE"
    assert statuses["card-6"] == "PARTIAL"  # card unknown, merchant found
    t = model.metadata.thresholds
    for record in scored.records:
        assert record["decision"] == expected_decision(record["score"], model.metadata)
        assert (record["review_threshold"], record["decline_threshold"]) == (t.review, t.decline)


def test_invalid_events_come_back_as_rejections_with_their_row(model: LoadedModel) -> None:
    events = [sample_event(), sample_event(amount_minor=-1), sample_event(currency="XXQ")]
    scored = ScoringKernel(model, InMemoryFeatures(model)).score(
        events, [(0, 10), (0, 11), (0, 12)], received_ms=1_764_000_100_000
    )
    assert scored.rows == [0]
    assert [(row, r.error_class, r.stage) for row, r in scored.rejected] == [
        (1, "AmountNotPositive", "validate"),
        (2, "UnknownCurrency", "validate"),
    ]
    assert scored.records[0]["source_offset"] == 10


def test_an_unavailable_feature_source_degrades_every_event(model: LoadedModel) -> None:
    features = InMemoryFeatures(model, cards={"card-000001": {}})
    features.down = True
    scored = ScoringKernel(model, features).score([sample_event()] * 3, [(0, i) for i in range(3)])
    assert scored.degraded
    assert scored.status_counts()["DEGRADED"] == 3
    expected = [expected_decision(r["score"], model.metadata) for r in scored.records]
    assert [r["decision"] for r in scored.records] == expected
    assert scored.decision_counts() == {name: expected.count(name) for name in DECISIONS}


def test_swapping_the_model_takes_effect_on_the_next_batch(model: LoadedModel) -> None:
    kernel = ScoringKernel(model, InMemoryFeatures(model))
    first = kernel.score([sample_event()], [(0, 0)]).records[0]

    class Constant:
        def score(self, matrix: np.ndarray) -> np.ndarray:
            return np.full(matrix.shape[0], 0.99)

    kernel.use(model, Constant())
    second = kernel.score([sample_event()], [(0, 1)]).records[0]
    assert first["score"] != 0.99
    assert (second["score"], second["decision"]) == (0.99, "DECLINE")


def test_scores_on_the_models_thresholds_are_decided_by_its_metadata(model: LoadedModel) -> None:
    t = model.metadata.thresholds
    edges = [0.0, t.review - 1e-9, t.review, t.decline - 1e-9, t.decline, 1.0, float("nan")]

    class Edges:
        def score(self, matrix: np.ndarray) -> np.ndarray:
            return np.array(edges[: matrix.shape[0]])

    kernel = ScoringKernel(model, InMemoryFeatures(model))
    kernel.use(model, Edges())
    events = [sample_event(transaction_id=f"t{i}") for i in range(len(edges))]
    scored = kernel.score(events, [(0, i) for i in range(len(edges))])
    decisions = [r["decision"] for r in scored.records]
    assert decisions == ["APPROVE", "APPROVE", "REVIEW", "REVIEW", "DECLINE", "DECLINE", "REVIEW"]


def _events(n: int) -> list[dict[str, object]]:
    return [
        sample_event(transaction_id=f"t{i}", card_id=f"card-{i % 5}", amount_minor=700 * (i + 1))
        for i in range(n)
    ]


def test_shadow_scores_equal_a_direct_run_of_the_shadow_model(model: LoadedModel) -> None:
    from streamer.scoring.kernel import ShadowModel

    shadow_model = load_model("fraud-gbt@1", REPO / "models")
    features = InMemoryFeatures(model, cards={"card-1": {"txn_count_24h": 9}})
    kernel = ScoringKernel(model, features)
    kernel.use_shadow(ShadowModel(shadow_model, Scorer(shadow_model)))
    events = _events(50)
    scored = kernel.score(events, [(0, i) for i in range(50)])

    fetched = features.fetch([e["card_id"] for e in events], [e["merchant_id"] for e in events])  # type: ignore[misc]
    matrix = assemble(
        event_columns(events), fetched.card, fetched.merchant, shadow_model.metadata.feature_names
    )
    direct = Scorer(shadow_model).score(matrix)
    shadow_scores = [r["shadow_score"] for r in scored.records]
    np.testing.assert_allclose(shadow_scores, direct, atol=1e-6)
    assert {r["shadow_model_version"] for r in scored.records} == {"1"}
    shadow_decisions = [r["shadow_decision"] for r in scored.records]
    expected = [expected_decision(r["shadow_score"], shadow_model.metadata) for r in scored.records]
    assert shadow_decisions == expected


def test_a_failing_shadow_leaves_the_output_byte_identical(model: LoadedModel) -> None:
    from streamer.codec.schemas import scored_schema
    from streamer.codec.wire import make_encoder
    from streamer.scoring.kernel import ShadowModel

    class Broken:
        def score(self, matrix: np.ndarray) -> np.ndarray:
            raise RuntimeError("the challenger is broken")

    encode = make_encoder("single-object", schema=scored_schema()).encode
    clock = iter(range(1_764_000_100_000, 1_764_000_200_000))
    plain = ScoringKernel(model, InMemoryFeatures(model), clock=lambda: next(clock))
    clock2 = iter(range(1_764_000_100_000, 1_764_000_200_000))
    shadowed = ScoringKernel(model, InMemoryFeatures(model), clock=lambda: next(clock2))
    shadowed.use_shadow(ShadowModel(model, Broken()))
    events = _events(20)
    a = plain.score(events, [(0, i) for i in range(20)])
    b = shadowed.score(events, [(0, i) for i in range(20)])
    assert [encode(r) for r in a.records] == [encode(r) for r in b.records]
    assert shadowed.shadow_failures == 1
