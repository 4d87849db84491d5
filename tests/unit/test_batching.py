"""Latency-targeted batch sizing: a pure function of the costs it was told."""

from __future__ import annotations

import pytest

from streamer.kafka.batching import LatencyTargetSizer


def _fed(target_ms: float, fixed: float, per_event: float, **kw: int) -> LatencyTargetSizer:
    sizer = LatencyTargetSizer(target_ms, **kw)
    for n in (10, 50, 100, 200, 400, 800):
        sizer.report(n, fixed + per_event * n)
    return sizer


def test_the_cost_model_is_fitted_from_the_reports() -> None:
    fixed, per_event = _fed(25, 0.003, 40e-6).cost()
    assert fixed == pytest.approx(0.003, rel=1e-6)
    assert per_event == pytest.approx(40e-6, rel=1e-6)


@pytest.mark.parametrize(
    ("target_ms", "fixed", "per_event"),
    [(25, 0.003, 40e-6), (50, 0.001, 20e-6), (10, 0.002, 100e-6)],
)
def test_a_full_batch_is_processed_within_half_the_target(
    target_ms: float, fixed: float, per_event: float
) -> None:
    bounds = _fed(target_ms, fixed, per_event).bounds()
    assert fixed + per_event * bounds.size <= target_ms / 1000 / 2 + 1e-9
    assert 0 <= bounds.wait_s <= target_ms / 1000 / 4


def test_a_tighter_target_means_smaller_batches_and_shorter_waits() -> None:
    loose = _fed(100, 0.002, 30e-6).bounds()
    tight = _fed(20, 0.002, 30e-6).bounds()
    assert tight.size < loose.size
    assert tight.wait_s < loose.wait_s


def test_sizes_stay_within_bounds() -> None:
    assert _fed(10_000, 0.001, 1e-6, max_size=2000).bounds().size == 2000
    assert _fed(1, 0.01, 1e-3, min_size=16).bounds().size == 16


def test_a_target_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LatencyTargetSizer(0)


def test_a_backlog_lets_batches_grow_to_the_size_bound() -> None:
    sizer = _fed(20, 0.002, 30e-6, max_size=5000)
    small = sizer.bounds().size
    sizer.report(small, 0.002 + 30e-6 * small, full=True)
    assert sizer.bounds().size == 5000
    sizer.report(10, 0.0025)
    assert sizer.bounds().size < 5000
