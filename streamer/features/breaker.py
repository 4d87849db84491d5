"""A circuit breaker for the feature cache: fail fast while Redis is down, probe to recover.

closed → (``failures`` consecutive errors) → open → (``cooldown_s`` elapsed) → half-open:
one trial call; success closes, failure opens again. The clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Counts consecutive failures; ``allow()`` says whether to try the dependency now."""

    def __init__(
        self, failures: int = 3, cooldown_s: float = 5.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failures
        self._cooldown = cooldown_s
        self._now = now
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._now() - self._opened_at >= self._cooldown:
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
