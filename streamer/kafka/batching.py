"""Latency-targeted batching: the batch wait and size chosen from measured stage costs.

A fixed batch (size 500, wait 10 ms) is a compromise: at a low rate the wait dominates an
event's latency, at a high rate a small batch wastes the per-batch cost. With a latency
target ``T`` the sizer keeps an estimate of what a batch costs, ``fixed + per_event * n``
(least squares over recent batches, no I/O), and picks:

- the largest size whose processing still fits in half of ``T``;
- a wait of what is left of a quarter of ``T`` after processing a typical batch, so a
  lone event is not held longer than the target allows.

The other half of ``T`` is for the broker's acknowledgement and the producer's linger.
At high rates batches fill before the wait ends; a full batch means a backlog, and then the
next batch may use the whole size bound (waiting in the queue costs more than a big
batch): throughput wins. At low rates the wait is short: the tail wins. Pure: the loop
reports, then asks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchBounds:
    """What ``Consumer.consume`` is asked for: at most ``size`` messages, waiting ``wait_s``."""

    size: int
    wait_s: float


class LatencyTargetSizer:
    """Chooses ``BatchBounds`` for a latency target from the costs of recent batches."""

    def __init__(
        self,
        target_ms: float,
        *,
        max_size: int = 5000,
        min_size: int = 16,
        history: int = 64,
    ) -> None:
        if target_ms <= 0:
            raise ValueError("target_ms must be positive")
        self._target_s = target_ms / 1000.0
        self._max, self._min = max_size, min_size
        self._samples: deque[tuple[int, float]] = deque(maxlen=history)
        self._behind = False

    def report(self, events: int, seconds: float, *, full: bool = False) -> None:
        """A batch of ``events`` took ``seconds`` from consume to the last produce call;
        ``full``: it was as large as asked (more is waiting)."""
        self._behind = full
        if events > 0 and seconds >= 0:
            self._samples.append((events, seconds))

    def cost(self) -> tuple[float, float]:
        """(fixed seconds per batch, seconds per event), fitted to recent batches."""
        if len(self._samples) < 4:
            return 0.002, 50e-6  # a cautious start: 2 ms a batch, 50 µs an event
        n = np.array([s[0] for s in self._samples], dtype=np.float64)
        t = np.array([s[1] for s in self._samples], dtype=np.float64)
        if np.ptp(n) == 0:  # one batch size only: no slope to fit, split the cost evenly
            return float(t.mean()) / 2, float(t.mean() / n[0]) / 2
        slope, intercept = np.polyfit(n, t, 1)
        return max(float(intercept), 0.0), max(float(slope), 1e-7)

    def bounds(self) -> BatchBounds:
        fixed, per_event = self.cost()
        budget = self._target_s / 2
        size = int((budget - fixed) / per_event) if budget > fixed else self._min
        size = self._max if self._behind else min(max(size, self._min), self._max)
        typical = fixed + per_event * min(size, self._typical())
        wait = max(self._target_s / 4 - typical, 0.0)
        return BatchBounds(size, wait)

    def _typical(self) -> int:
        if not self._samples:
            return 1
        return int(np.median([s[0] for s in self._samples]))
