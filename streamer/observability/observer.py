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
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
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

    def batch(self, messages: Sequence[Message]) -> AbstractContextManager[None]:
        """Around the processing of one consumed micro-batch."""
        return nullcontext()

    def stage(self, name: str) -> AbstractContextManager[None]:
        """Around one stage of a batch (decode, validate, enrich, score, publish)."""
        return nullcontext()

    def carry(self) -> object:
        """Inside ``batch``: what ``resume`` needs to go on with this batch after its
        ``batch`` block ended (a backlog's batch is published while the next is scored)."""
        return None

    def resume(self, carried: object) -> AbstractContextManager[None]:
        """Around the rest of a batch's work, as if inside its ``batch`` (``carry``)."""
        return nullcontext()

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
    """Several observers as one; hooks run in the given order.

    ``batch`` and ``stage`` wrap every batch and each of its ~10 stages: only the observers
    that override them are entered, and one such observer is entered directly, without an
    ``ExitStack`` (their fan-out was a fixed cost a one-event batch felt)."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self._all = tuple(observers)
        self._batching = _overriding(self._all, "batch")
        self._staging = _overriding(self._all, "stage")

    def batch(self, messages: Sequence[Message]) -> AbstractContextManager[None]:
        if len(self._batching) <= 1:
            return self._batching[0].batch(messages) if self._batching else nullcontext()
        return self._fanned_batch(messages)

    def stage(self, name: str) -> AbstractContextManager[None]:
        if len(self._staging) <= 1:
            return self._staging[0].stage(name) if self._staging else nullcontext()
        return self._fanned_stage(name)

    def carry(self) -> object:
        return tuple(observer.carry() for observer in self._batching)

    @contextmanager
    def resume(self, carried: object) -> Iterator[None]:
        with ExitStack() as stack:
            for observer, own in zip(self._batching, carried, strict=True):  # type: ignore[call-overload]
                stack.enter_context(observer.resume(own))
            yield

    @contextmanager
    def _fanned_batch(self, messages: Sequence[Message]) -> Iterator[None]:
        with ExitStack() as stack:
            for observer in self._batching:
                stack.enter_context(observer.batch(messages))
            yield

    @contextmanager
    def _fanned_stage(self, name: str) -> Iterator[None]:
        with ExitStack() as stack:
            for observer in self._staging:
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


def _overriding(observers: tuple[Observer, ...], hook: str) -> tuple[Observer, ...]:
    """The observers whose ``hook`` is not the base class's do-nothing one."""
    base = getattr(Observer, hook)
    return tuple(o for o in observers if getattr(type(o), hook) is not base)
