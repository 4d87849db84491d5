"""``ScoringKernel.start``'s ``meanwhile``: the caller's work (the stream completes the
batch before last) runs exactly once per batch, whatever becomes of the batch's features,
and what it raises reaches the caller instead of being taken for a failure of the batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from streamer import ScoringKernel, load_model
from streamer.features.cache import Features
from streamer.model.registry import LoadedModel
from streamer.testing import InMemoryFeatures, sample_event

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("fraud-gbt", REPO / "models")


class Splitting:
    """A feature source that splits its read as the Redis cache does: ``meanwhile`` runs
    between the read going out and its reply coming back; ``log`` tells the order."""

    def __init__(self, inner: InMemoryFeatures, *, fail: bool = False) -> None:
        self.inner, self.fail, self.log = inner, fail, list[str]()

    def fetch(
        self,
        card_ids: Sequence[str],
        merchant_ids: Sequence[str],
        *,
        meanwhile: Callable[[], object] | None = None,
    ) -> Features:
        self.log.append("sent")
        if meanwhile is not None:
            meanwhile()
        if self.fail:
            raise RuntimeError("the features of this batch cannot be read")
        self.log.append("replied")
        return self.inner.fetch(card_ids, merchant_ids)


def _events(n: int) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    events = [sample_event(transaction_id=f"t{i}", card_id=f"card-{i % 7}") for i in range(n)]
    return events, [(0, i) for i in range(n)]


def test_the_work_runs_once_while_the_read_is_in_flight(model: LoadedModel) -> None:
    source = Splitting(InMemoryFeatures(model))
    kernel = ScoringKernel(model, source)
    events, sources = _events(20)

    scored = kernel.start(
        events, sources, meanwhile=lambda: source.log.append("meanwhile")
    ).result()

    assert source.log == ["sent", "meanwhile", "replied"]
    assert scored.rows == list(range(20))


@pytest.mark.parametrize(
    "case", ["no valid event", "Redis down", "a source that cannot split", "features fail"]
)
def test_the_work_runs_exactly_once_whatever_becomes_of_the_features(
    model: LoadedModel, case: str
) -> None:
    inner = InMemoryFeatures(model)
    source: Any = Splitting(inner, fail=case == "features fail")
    inner.down = case == "Redis down"
    if case == "a source that cannot split":
        source = inner  # the in-memory Redis reads at once: the kernel runs the work after
    events, sources = _events(5)
    if case == "no valid event":
        events = [sample_event(amount_minor=-1)] * 5
    runs: list[int] = []

    scored = (
        ScoringKernel(model, source)
        .start(events, sources, meanwhile=lambda: runs.append(1))
        .result()
    )

    assert runs == [1]
    if case == "features fail":  # contained: every event fails on its own, and says so
        assert [r.stage for _, r in scored.rejected] == ["enrich"] * 5
    else:
        assert len(scored.rows) + len(scored.rejected) == 5


class PublishError(Exception):
    pass


def test_what_the_work_raises_reaches_the_caller_and_the_next_batch_scores(
    model: LoadedModel,
) -> None:
    source = Splitting(InMemoryFeatures(model))
    kernel = ScoringKernel(model, source)
    events, sources = _events(10)

    def publish_fails() -> None:
        raise PublishError("the batch before could not be published")

    with pytest.raises(PublishError):  # not a rejection of this batch's events
        kernel.start(events, sources, meanwhile=publish_fails)
    scored = kernel.start(events, sources).result()

    assert scored.rows == list(range(10))
    assert not scored.rejected
