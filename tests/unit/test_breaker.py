from __future__ import annotations

from streamer.features.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_opens_after_consecutive_failures_and_recovers_through_half_open() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, probe_interval_s=5.0, now=clock)
    breaker.failure()
    breaker.failure()
    assert breaker.state == "closed"
    breaker.success()  # a success resets the count
    breaker.failure()
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open"
    assert not breaker.allow()

    clock.t += 4.9
    assert not breaker.allow()
    clock.t += 0.2
    assert breaker.state == "half-open"
    assert breaker.allow()

    breaker.failure()  # the trial failed: open again for a full cooldown
    assert breaker.state == "open"
    clock.t += 5.0
    breaker.success()
    assert breaker.state == "closed"


def test_probes_every_quarter_second_by_default_while_open() -> None:
    """Recovery must follow Redis within a second: the default probe interval is 250 ms."""
    clock = Clock()
    breaker = CircuitBreaker(failures=1, now=clock)
    breaker.failure()
    assert not breaker.allow()
    clock.t += 0.24
    assert not breaker.allow()
    clock.t += 0.01
    assert breaker.allow()
    breaker.failure()  # Redis still down: the next probe is one interval later, not sooner
    assert not breaker.allow()
    clock.t += 0.25
    assert breaker.allow()
