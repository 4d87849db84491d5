"""The promotion gate's bounds, apart from the gate: the command line reads their defaults
without importing what the gate computes with (NumPy, pydantic)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """How far a candidate may be from the champion and still pass."""

    roc_auc_drop: float = 0.005
    pr_auc_drop: float = 0.01
    min_agreement: float = 0.95
    review_rate_change: float = 0.25  # relative: 0.25 allows 8% -> 6% or 10% of traffic
    decline_rate_change: float = 0.25
    rate_floor: float = 0.002  # absolute slack, so a champion rate near 0 is not a wall
    p99_batch_ms: float = 50.0  # one ONNX run of a 500-event batch; ~2 ms here when idle
