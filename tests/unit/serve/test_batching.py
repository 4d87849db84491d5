"""Merging and splitting requests, and the batcher's window, cap and drain (no servers)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamer.errors import Rejection
from streamer.scoring.kernel import ScoringKernel
from streamer.serve.batcher import Batcher
from streamer.serve.batching import merge, split
from streamer.testing import InMemoryFeatures, sample_event


@pytest.fixture
def kernel(model: Any) -> ScoringKernel:
    return ScoringKernel(model, InMemoryFeatures(model))


@pytest.mark.parametrize(
    ("sizes", "bad_rows"),
    [([1], []), ([1], [0]), ([3, 1, 2], [1, 4]), ([2, 2], [0, 1, 2, 3]), ([5], [4])],
)
def test_split_gives_each_request_its_own_outcomes_in_order(
    kernel: ScoringKernel, sizes: list[int], bad_rows: list[int]
) -> None:
    requests = [
        [sample_event(transaction_id=f"r{r}-e{e}") for e in range(size)]
        for r, size in enumerate(sizes)
    ]
    events, got_sizes = merge(requests)
    for row in bad_rows:
        events[row] = {**events[row], "amount_minor": -1}
    outcomes = split(kernel.score(events, [(-1, -1)] * len(events)), got_sizes)
    assert [len(o) for o in outcomes] == sizes
    flat = [o for request in outcomes for o in request]
    for row, outcome in enumerate(flat):
        if row in bad_rows:
            assert isinstance(outcome, Rejection)
            assert outcome.error_class == "AmountNotPositive"
        else:
            assert isinstance(outcome, dict)
            assert outcome["transaction_id"] == events[row]["transaction_id"]


class Recorder:
    """Scores like the kernel and records the size of every call."""

    def __init__(self, kernel: ScoringKernel) -> None:
        self.kernel = kernel
        self.calls: list[int] = []

    def __call__(self, events: list[Any], tags: list[Any]) -> Any:
        self.calls.append(len(events))
        return self.kernel.score(events, [(-1, -1)] * len(events))


async def _burst(batcher: Batcher, n: int) -> list[Any]:
    batcher.start()
    try:
        results = await asyncio.gather(
            *(batcher.submit([sample_event(transaction_id=f"t{i}")]) for i in range(n))
        )
    finally:
        await batcher.stop()
    return [outcome for (outcome,) in results]


def test_concurrent_requests_share_one_kernel_call(kernel: ScoringKernel) -> None:
    recorder = Recorder(kernel)
    outcomes = asyncio.run(_burst(Batcher(recorder, wait_ms=50, max_batch=256), 40))
    assert recorder.calls == [40]
    assert [o["transaction_id"] for o in outcomes] == [f"t{i}" for i in range(40)]


def test_with_no_window_a_lone_request_goes_at_once_and_those_queued_meanwhile_share_the_next(
    kernel: ScoringKernel,
) -> None:
    recorder = Recorder(kernel)
    arriving: list[asyncio.Task[Any]] = []

    async def scenario() -> None:
        def score(events: list[Any], tags: list[Any]) -> Any:
            if not arriving:  # five requests arrive while the first batch is scored
                arriving.extend(
                    asyncio.create_task(batcher.submit([sample_event()])) for _ in range(5)
                )
            return recorder(events, tags)

        batcher = Batcher(score, wait_ms=0, max_batch=256)
        batcher.start()
        await batcher.submit([sample_event()])
        await asyncio.gather(*arriving)
        await batcher.stop()

    asyncio.run(scenario())
    assert recorder.calls == [1, 5]


def test_answered_requests_resume_before_the_next_batch_is_scored(kernel: ScoringKernel) -> None:
    """Batches run on the event loop: between two, the loop lets the answered requests go."""
    responded: list[int] = []
    seen_at_each_batch: list[list[int]] = []

    def score(events: list[Any], tags: list[Any]) -> Any:
        seen_at_each_batch.append(list(responded))
        return kernel.score(events, [(-1, -1)] * len(events))

    async def scenario() -> None:
        batcher = Batcher(score, wait_ms=0, max_batch=1)
        batcher.start()

        async def client(i: int) -> None:
            await batcher.submit([sample_event(transaction_id=f"t{i}")])
            responded.append(i)

        await asyncio.gather(*(client(i) for i in range(3)))
        await batcher.stop()

    asyncio.run(scenario())
    assert seen_at_each_batch == [[], [0], [0, 1]]


@pytest.mark.parametrize(("max_batch", "calls"), [(1, [1] * 10), (4, [4, 4, 2]), (10, [10])])
def test_max_batch_caps_each_call(kernel: ScoringKernel, max_batch: int, calls: list[int]) -> None:
    recorder = Recorder(kernel)
    asyncio.run(_burst(Batcher(recorder, wait_ms=50, max_batch=max_batch), 10))
    assert recorder.calls == calls


def test_a_failing_batch_fails_its_requests_and_the_batcher_keeps_serving(
    kernel: ScoringKernel,
) -> None:
    calls = []

    def flaky(events: list[Any], tags: list[Any]) -> Any:
        calls.append(len(events))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return kernel.score(events, [(-1, -1)] * len(events))

    async def scenario() -> Any:
        batcher = Batcher(flaky, wait_ms=0, max_batch=8)
        batcher.start()
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit([sample_event()])
        (outcome,) = await batcher.submit([sample_event()])
        await batcher.stop()
        return outcome

    assert asyncio.run(scenario())["decision"] in {"APPROVE", "REVIEW", "DECLINE"}


def test_submit_after_stop_is_refused(kernel: ScoringKernel) -> None:
    async def scenario() -> None:
        batcher = Batcher(Recorder(kernel), wait_ms=0, max_batch=8)
        batcher.start()
        await batcher.stop()
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit([sample_event()])

    asyncio.run(scenario())
