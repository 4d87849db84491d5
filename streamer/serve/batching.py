"""Merging concurrent requests into one kernel batch, and splitting the result back. Pure.

A request carries one event (``/v1/score``) or several (``/v1/score:batch``); the batcher
concatenates them, the kernel scores the lot in one call, and ``split`` hands each request
its own outcomes in its own order: a ScoredEvent record, or the ``Rejection`` the stream
would have dead-lettered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from streamer.errors import Rejection
from streamer.scoring.kernel import Scored

Event = Mapping[str, Any]
Outcome = dict[str, Any] | Rejection
"""One event's result: its ScoredEvent record, or why it was not scored."""


def merge(requests: Sequence[Sequence[Event]]) -> tuple[list[Event], list[int]]:
    """All events of ``requests`` in order, and how many each request contributed."""
    events = [event for request in requests for event in request]
    return events, [len(request) for request in requests]


def split(scored: Scored, sizes: Sequence[int]) -> list[list[Outcome]]:
    """Each request's outcomes, aligned with its events (``sizes`` from ``merge``)."""
    outcomes: list[Outcome | None] = [None] * sum(sizes)
    for row, record in zip(scored.rows, scored.records, strict=True):
        outcomes[row] = record
    for row, rejection in scored.rejected:
        outcomes[row] = rejection
    missing = [i for i, outcome in enumerate(outcomes) if outcome is None]
    if missing:  # the kernel accounts for every row; anything else is a bug worth a loud stop
        raise RuntimeError(f"kernel returned no outcome for rows {missing[:5]}")
    result: list[list[Outcome]] = []
    start = 0
    for size in sizes:
        result.append([o for o in outcomes[start : start + size] if o is not None])
        start += size
    return result
