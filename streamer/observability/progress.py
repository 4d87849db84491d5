"""An INFO line every ``interval_s`` saying what the stream did: an operator's heartbeat.

Consumed, scored and dead-lettered since the last line, the total lag, and the p99
end-to-end latency of the interval (from the latency histogram's buckets: an upper bound).
When the p99 lies above the last bucket (the first line after start-up often does: events
that waited in the topic while the stream was down), the line says ``p99 > 30000 ms``, the
only thing the buckets know, never ``<= inf``. Driven by the loop's lag reports (every
couple of seconds), so it needs no thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from streamer.kafka.loop import LoopStats
from streamer.observability.metrics import BatchHistogram
from streamer.observability.observer import Lag, Observer

log = logging.getLogger("streamer.progress")


def p99_upper_bound(bounds: np.ndarray, counts: np.ndarray) -> float | None:
    """The bucket bound under which 99% of ``counts`` fall (inf above the last), or None."""
    total = int(counts.sum())
    if total == 0:
        return None
    index = int(np.searchsorted(np.cumsum(counts), 0.99 * total))
    return float(bounds[index]) if index < bounds.size else float("inf")


def describe_p99(bounds: np.ndarray, p99: float | None) -> tuple[str, dict[str, float | None]]:
    """The p99 words of a progress line and its structured fields (finite numbers only:
    JSON has no infinity)."""
    if p99 is None:
        return "n/a", {"p99_ms": None}
    if p99 == float("inf"):
        above = float(bounds[-1]) * 1000
        return f"> {above:.0f} ms", {"p99_ms": None, "p99_above_ms": above}
    return f"<= {p99 * 1000:.0f} ms", {"p99_ms": p99 * 1000}


class ProgressLog(Observer):
    """Logs progress when a lag report arrives and ``interval_s`` has passed (0: never)."""

    def __init__(
        self,
        stats: LoopStats,
        latency: BatchHistogram,
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stats = stats
        self._latency = latency
        self._interval_s = interval_s
        self._clock = clock
        self._due = clock() + interval_s
        self._last = (0, 0, 0)
        self._last_counts = latency.counts.copy()

    def lag(self, lag: Lag) -> None:
        if not self._interval_s or self._clock() < self._due:
            return
        self._due = self._clock() + self._interval_s
        s = self._stats
        now = (s.consumed, s.scored, s.dead_lettered)
        consumed, scored, dead = (a - b for a, b in zip(now, self._last, strict=True))
        counts = self._latency.counts.copy()
        p99 = p99_upper_bound(self._latency.bounds, counts - self._last_counts)
        self._last, self._last_counts = now, counts
        words, fields = describe_p99(self._latency.bounds, p99)
        log.info(
            "progress: %d consumed, %d scored, %d dead-lettered in %.0fs; lag %d; p99 %s",
            consumed,
            scored,
            dead,
            self._interval_s,
            sum(lag.values()),
            words,
            extra={
                "consumed": consumed,
                "scored": scored,
                "dead_lettered": dead,
                "lag": sum(lag.values()),
                **fields,
            },
        )
