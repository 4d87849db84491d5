"""Telemetry as observers: the loop and the kernel report what happened, observers record it.

The loop never calls a metric or a tracer itself. It tells its ``Observer`` that a batch
started, that a stage ran, what was scored, what was dead-lettered, what was acknowledged
and how far behind it is; the metrics (``MetricsObserver``) and the tracing
(``TracingObserver``) each implement the hooks they care about, and ``Observers`` fans
the calls out to several. The base class does nothing, so a hook costs nothing unless an
observer overrides it, and tests can attach observers of their own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from confluent_kafka import Message

from streamer.errors import Rejection

if TYPE_CHECKING:
    from streamer.scoring.kernel import Scored

Headers = list[tuple[str, bytes]]
Lag = Mapping[tuple[str, int], int]


class Observer:
    """Hooks the loop and the kernel call; every default does nothing."""

    @contextmanager
    def batch(self, messages: Sequence[Message]) -> Iterator[None]:
        """Around the processing of one consumed micro-batch."""
        yield

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Around one stage of a batch (decode, validate, enrich, score, publish)."""
        yield

    def output_headers(self, messages: Sequence[Message]) -> list[Headers | None] | None:
        """Trace headers for the outputs of ``messages`` (inside ``batch``), or None."""
        return None

    def scored(self, result: Scored) -> None:
        """A (sub-)batch was scored by the kernel."""

    def dead_lettered(self, rejection: Rejection) -> None:
        """A dead letter was acknowledged by the broker."""

    def delivered(self, latencies_ms: npt.NDArray[np.int64]) -> None:
        """Scored events were acknowledged; event time to acknowledgement of each."""

    def lag(self, lag: Lag) -> None:
        """Messages behind each assigned partition's end."""

    def transaction(self, outcome: str, seconds: float, batches: int) -> None:
        """Exactly-once: a transaction spanning ``batches`` batches was committed or
        aborted (``outcome``), the commit or abort call taking ``seconds``."""


class Observers(Observer):
    """Several observers as one; hooks run in the given order."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self._all = tuple(observers)

    @contextmanager
    def batch(self, messages: Sequence[Message]) -> Iterator[None]:
        with ExitStack() as stack:
            for observer in self._all:
                stack.enter_context(observer.batch(messages))
            yield

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        with ExitStack() as stack:
            for observer in self._all:
                stack.enter_context(observer.stage(name))
            yield

    def output_headers(self, messages: Sequence[Message]) -> list[Headers | None] | None:
        for observer in self._all:
            headers = observer.output_headers(messages)
            if headers is not None:
                return headers
        return None

    def scored(self, result: Scored) -> None:
        for observer in self._all:
            observer.scored(result)

    def dead_lettered(self, rejection: Rejection) -> None:
        for observer in self._all:
            observer.dead_lettered(rejection)

    def delivered(self, latencies_ms: npt.NDArray[np.int64]) -> None:
        for observer in self._all:
            observer.delivered(latencies_ms)

    def lag(self, lag: Lag) -> None:
        for observer in self._all:
            observer.lag(lag)

    def transaction(self, outcome: str, seconds: float, batches: int) -> None:
        for observer in self._all:
            observer.transaction(outcome, seconds, batches)
