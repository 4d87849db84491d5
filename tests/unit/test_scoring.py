"""The scorer agrees with a plain ONNX Runtime run; decisions honour inclusive thresholds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from streamer import features
from streamer.dev import synth
from streamer.model.registry import LoadedModel, load_model
from streamer.model.scorer import Scorer
from streamer.model.sessions import session_options
from streamer.scoring.decisions import DECISIONS, decide

MODELS = Path(__file__).parents[2] / "models"


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("fraud-gbt@1", MODELS)


@pytest.fixture(scope="module")
def matrix(model: LoadedModel) -> np.ndarray:
    pop = synth.make_population(3, n_cards=500, n_merchants=100)
    data = synth.generate_labeled(pop, 700, seed=9, start_ms=1_767_225_600_000)
    cols = features.event_columns(data.events)
    return features.assemble(cols, data.card_rows, data.merchant_rows, model.metadata.feature_names)


def test_scores_match_a_direct_onnxruntime_run(model: LoadedModel, matrix: np.ndarray) -> None:
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    (direct,) = session.run(["probabilities"], {"features": matrix})
    scores = Scorer(model).score(matrix)
    assert scores.dtype == np.float64
    assert scores.shape == (len(matrix),)
    # Thread count and graph optimizations may reorder float32 sums: 1 ulp of slack.
    np.testing.assert_allclose(scores, direct[:, 1], rtol=0, atol=1e-6)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores.max() > model.metadata.thresholds.review  # some events look suspicious


def test_one_run_per_batch(model: LoadedModel, matrix: np.ndarray) -> None:
    scorer = Scorer(model)
    calls = []
    real_run = scorer._session.run

    def counting_run(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real_run(*args, **kwargs)  # type: ignore[arg-type]

    scorer._session.run = counting_run  # type: ignore[method-assign]
    scorer.score(matrix)
    assert len(calls) == 1


def test_float64_and_non_contiguous_input_give_the_same_scores(
    model: LoadedModel, matrix: np.ndarray
) -> None:
    scorer = Scorer(model)
    expected = scorer.score(matrix)
    np.testing.assert_allclose(scorer.score(matrix.astype(np.float64)), expected)
    fortran = np.asfortranarray(matrix)
    np.testing.assert_allclose(scorer.score(fortran), expected)


def test_empty_batch_and_wrong_width(model: LoadedModel) -> None:
    scorer = Scorer(model)
    width = len(model.metadata.feature_names)
    assert scorer.score(np.zeros((0, width), np.float32)).shape == (0,)
    with pytest.raises(ValueError, match=f"expected \\[n, {width}\\]"):
        scorer.score(np.zeros((3, width - 1), np.float32))


def test_session_never_spins_and_uses_one_thread_by_default() -> None:
    options = session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.mark.parametrize(
    ("score", "decision"),
    [
        (0.0, "APPROVE"),
        (0.0999, "APPROVE"),
        (0.1, "REVIEW"),
        (0.4999, "REVIEW"),
        (0.5, "DECLINE"),
        (1.0, "DECLINE"),
        (float("nan"), "REVIEW"),
    ],
)
def test_decide_at_threshold_boundaries(score: float, decision: str) -> None:
    codes = decide(np.array([score]), review=0.1, decline=0.5)
    assert codes.dtype == np.int8
    assert DECISIONS[codes[0]] == decision


def test_decide_with_equal_thresholds_never_reviews() -> None:
    codes = decide(np.array([0.29, 0.3, 0.31]), review=0.3, decline=0.3)
    assert [DECISIONS[c] for c in codes] == ["APPROVE", "DECLINE", "DECLINE"]


@pytest.mark.parametrize(("review", "decline"), [(0.6, 0.5), (-0.1, 0.5), (0.1, 1.5)])
def test_decide_rejects_bad_thresholds(review: float, decline: float) -> None:
    with pytest.raises(ValueError, match="review"):
        decide(np.array([0.5]), review, decline)


def test_scorer_decides_with_its_thresholds(model: LoadedModel) -> None:
    t = model.metadata.thresholds
    codes = decide(np.array([t.review - 1e-9, t.review, t.decline]), t.review, t.decline)
    assert codes.tolist() == [0, 1, 2]


@pytest.mark.parametrize("field", ["transaction_id", "card_id", "merchant_id", "device_id"])
def test_ids_are_accepted_up_to_the_bound_and_rejected_past_it(field: str) -> None:
    from streamer.scoring.validation import MAX_ID_LENGTH, validate
    from streamer.testing import sample_event

    now = 1_764_000_100_000
    at_bound = sample_event(event_time=now, **{field: "x" * MAX_ID_LENGTH})
    past = sample_event(event_time=now, **{field: "é" * (MAX_ID_LENGTH + 1)})
    assert validate(at_bound, now) is None
    rejection = validate(past, now)
    assert rejection is not None
    assert (rejection.error_class, rejection.stage) == ("IdTooLong", "validate")
    assert field in rejection.message
    assert "é" not in rejection.message
