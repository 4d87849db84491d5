"""A circuit breaker for the feature cache: fail fast while Redis is down, probe to recover.

closed → (``failures`` consecutive errors) → open → (``probe_interval_s`` elapsed) →
half-open: a trial call; success closes, failure opens again for another interval. The
interval is short (250 ms by default) because recovery must follow Redis within a second:
a fixed multi-second cooldown scored payments with default features for seconds after Redis
was back. A failed probe against a dead Redis costs little (refused at once, or one
client timeout of tens of milliseconds). The clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Counts consecutive failures; ``allow()`` says whether to try the dependency now."""

    def __init__(
        self,
        failures: int = 3,
        probe_interval_s: float = 0.25,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures
        self._interval = probe_interval_s
        self._now = now
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._now() - self._opened_at >= self._interval:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """True when a call may be attempted (closed, or half-open for a trial)."""
        return self.state != "open"

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def failure(self) -> None:
        self._failures += 1
        if self.state == "half-open" or self._failures >= self._threshold:
            self._opened_at = self._now()
