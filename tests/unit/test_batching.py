"""Batching decisions: the consume plan and latency-targeted sizing, pure functions of
the settings and of the costs they were told."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.kafka.batching import BatchBounds, ConsumePlan, LatencyTargetSizer, consume_plan


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


# -- the consume plan: adaptive by default, filled on request, capped by a target ----------


@pytest.mark.parametrize(
    ("max_size", "max_wait_s", "capped", "expected"),
    [
        # the default: take what is waiting, up to the size bound, block only while idle
        (500, 0.0, None, ConsumePlan(500, 0.0, 0.05)),
        # a fill wait asked for: the batch waits up to it (and so does an idle step)
        (500, 0.01, None, ConsumePlan(500, 0.01, 0.05)),
        (500, 0.2, None, ConsumePlan(500, 0.2, 0.2)),
        # a latency target caps the size and the fill wait, and leaves adaptive adaptive
        (500, 0.0, BatchBounds(120, 0.004), ConsumePlan(120, 0.0, 0.05)),
        (500, 0.01, BatchBounds(120, 0.004), ConsumePlan(120, 0.004, 0.05)),
        (500, 0.002, BatchBounds(120, 0.004), ConsumePlan(120, 0.002, 0.05)),
        # the cap never lets a batch exceed the setting's size bound
        (500, 0.0, BatchBounds(5000, 0.0), ConsumePlan(500, 0.0, 0.05)),
    ],
)
def test_consume_plans(
    max_size: int, max_wait_s: float, capped: BatchBounds | None, expected: ConsumePlan
) -> None:
    assert consume_plan(max_size, max_wait_s, 0.05, capped) == expected


def test_only_a_zero_fill_wait_is_adaptive() -> None:
    assert consume_plan(500, 0.0, 0.05).adaptive
    assert not consume_plan(500, 0.001, 0.05).adaptive


@given(
    max_size=st.integers(1, 100_000),
    max_wait_s=st.floats(0, 60, allow_nan=False),
    idle_s=st.floats(0, 1, allow_nan=False),
    capped=st.none() | st.builds(BatchBounds, st.integers(-5, 200_000), st.floats(-1, 60)),
)
def test_a_plan_stays_within_the_settings_and_the_cap(
    max_size: int, max_wait_s: float, idle_s: float, capped: BatchBounds | None
) -> None:
    plan = consume_plan(max_size, max_wait_s, idle_s, capped)
    assert 1 <= plan.size <= max_size
    assert 0 <= plan.fill_s <= max_wait_s
    assert plan.idle_s >= max(idle_s, plan.fill_s)  # an idle step never spins
    if capped is not None:
        assert plan.size <= max(capped.size, 1)
        assert plan.fill_s <= max(capped.wait_s, 0)
    if max_wait_s == 0:
        assert plan.adaptive
