"""Dynamic micro-batching across concurrent requests: one queue, one batch at a time.

Requests queue while a batch is scored; the next batch is everything queued by then (up to
``max_batch`` events): one Redis round trip and one model run for all of them, so batches
grow with load and an idle server answers a lone request at once. A window (``wait_ms``)
can hold a batch open for later arrivals too, trading latency for bigger batches.

The kernel runs on the event loop's own thread, between reads of the sockets. On one GIL a
worker thread bought no parallelism, only a hand-off per batch and a lock that the loop and
the worker took from each other (p50 3.2 → 2.0 ms at 500 requests/s, bench/serve.py). A
batch that never ends therefore stalls the loop, and /healthz with it: the liveness probe's
timeout is what notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer.scoring.kernel import Scored
from streamer.serve.batching import Event, Outcome, merge, split

ScoreFn = Callable[[list[Event], list[Any]], Scored]
"""Scores merged events; the second argument carries each event's request tag (trace)."""


@dataclass
class _Pending:
    events: Sequence[Event]
    tag: Any
    arrived: float
    future: asyncio.Future[list[Outcome]] = field(repr=False)


class Batcher:
    """Collects requests into batches and scores each batch on the event loop."""

    def __init__(self, score: ScoreFn, *, wait_ms: float, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._score = score
        self._wait_s = max(wait_ms, 0.0) / 1000.0
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._held: _Pending | None = None
        self._task: asyncio.Task[None] | None = None
        self.queued_events = 0

    def start(self) -> None:
        """Start collecting (call from the event loop that will submit)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def submit(self, events: Sequence[Event], tag: Any = None) -> list[Outcome]:
        """Score ``events`` in the next batch; their outcomes in order."""
        if not self.running:
            raise RuntimeError("the batcher is not running")
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self.queued_events += len(events)
        self._queue.put_nowait(_Pending(events, tag, time.monotonic(), future))
        return await future

    async def stop(self) -> None:
        """Score what is queued, then stop."""
        if self._task is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._held or await self._queue.get()
            self._held = None
            if first is None:
                break
            batch, stopping = await self._collect(first)
            self._dispatch(batch)
            await asyncio.sleep(0)  # the answered requests respond before the next batch

    async def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        """``first`` and whatever arrives within its window, up to ``max_batch`` events."""
        batch, size = [first], len(first.events)
        deadline = first.arrived + self._wait_s
        while size < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is None:
                return batch, True
            if size + len(item.events) > self._max_batch:
                self._held = item  # opens the next batch
                break
            batch.append(item)
            size += len(item.events)
        return batch, False

    def _dispatch(self, batch: list[_Pending]) -> None:
        events, sizes = merge([p.events for p in batch])
        tags = [p.tag for p in batch for _ in p.events]
        self.queued_events -= len(events)
        try:
            results = split(self._score(events, tags), sizes)
        except Exception as exc:  # noqa: BLE001  # a bug: fail these requests, keep serving
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        for pending, outcomes in zip(batch, results, strict=True):
            if not pending.future.done():  # the client may have gone away meanwhile
                pending.future.set_result(outcomes)
