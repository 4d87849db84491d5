"""Batching decisions: how much the loop takes from the consumer, and how long it waits.

**Adaptive (the default, ``max_wait_ms`` 0).** The loop never waits for a batch to fill: it
blocks only until the first message is there, then takes whatever else is already waiting,
up to the size bound, and scores it at once. When little is waiting a batch is one or a
few events and each is answered as soon as it arrives; when a backlog builds, whatever
queued while the last batch was processed is the next batch, so batches grow by
themselves until they reach the size bound, where throughput is best (the per-batch
costs are shared by the most events). No rate estimate, no timer: the queue is the signal.

**Filled (``max_wait_ms`` > 0).** Wait up to ``max_wait_ms`` for the batch to reach the size
bound (fewer, larger batches at moderate rates, each event held up to that long).

**Latency target (``latency_target_ms``).** A cap on top of either mode. The sizer
keeps an estimate of what a batch costs, ``fixed + per_event * n`` (least squares over
recent batches, no I/O), and picks:

- the largest size whose processing still fits in half of the target ``T``;
- a fill wait of what is left of a quarter of ``T`` after processing a typical batch, so a
  lone event is not held longer than the target allows (never longer than ``max_wait_ms``:
  adaptive batching stays adaptive).

The other half of ``T`` is for the broker's acknowledgement and the producer's linger.
A full batch means a backlog, and then the next batch may use the whole size bound
(waiting in the queue costs more than a big batch): throughput wins. Pure: the loop
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


@dataclass(frozen=True)
class ConsumePlan:
    """What the loop takes next: at most ``size`` messages; it blocks up to ``idle_s`` for
    the first one, then waits up to ``fill_s`` for more (0: takes what is waiting)."""

    size: int
    fill_s: float
    idle_s: float

    @property
    def adaptive(self) -> bool:
        """True when the batch is what is waiting, scored without a wait to fill."""
        return self.fill_s <= 0


def consume_plan(
    max_size: int, max_wait_s: float, idle_s: float, capped: BatchBounds | None = None
) -> ConsumePlan:
    """The next consume's bounds from the settings and, with a latency target, the sizer's
    ``capped`` bounds: the target only ever tightens them (a smaller size, a shorter fill
    wait), so with ``max_wait_s`` 0 batching stays adaptive under a target too. The loop
    blocks at least ``idle_s`` when nothing is waiting (it wakes up to serve delivery
    reports and commits, not to poll an empty queue)."""
    size, fill = max_size, max(max_wait_s, 0.0)
    if capped is not None:
        size, fill = max(min(capped.size, max_size), 1), min(fill, max(capped.wait_s, 0.0))
    return ConsumePlan(size, fill, max(idle_s, fill))


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
