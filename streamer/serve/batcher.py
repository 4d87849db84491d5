"""Dynamic micro-batching across concurrent requests: one queue, one window, one worker.

The first request to arrive opens a window of ``wait_ms``; every request arriving before it
closes (or until ``max_batch`` events) joins the same kernel call: one Redis round trip and
one model run for all of them. While the worker scores, newcomers queue up and form the
next batch at once, so batches grow with load and the added latency stays bounded by the
window. The kernel is not thread-safe, so it runs on exactly one worker thread; the event
loop only moves requests around and stays free to accept more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    """Collects requests into batches and scores each batch on one worker thread."""

    def __init__(self, score: ScoreFn, *, wait_ms: float, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._score = score
        self._wait_s = max(wait_ms, 0.0) / 1000.0
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._held: _Pending | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")
        self._task: asyncio.Task[None] | None = None
        self.busy_since: float | None = None  # monotonic start of the batch being scored
        self.queued_events = 0
        self.batches = 0

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
        """Score what is queued, then stop the worker."""
        if self._task is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._held or await self._queue.get()
            self._held = None
            if first is None:
                break
            batch, stopping = await self._collect(first)
            await self._dispatch(batch)

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

    async def _dispatch(self, batch: list[_Pending]) -> None:
        events, sizes = merge([p.events for p in batch])
        tags = [p.tag for p in batch for _ in p.events]
        self.queued_events -= len(events)
        self.busy_since = time.monotonic()
        try:
            scored = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._score, events, tags
            )
            results = split(scored, sizes)
        except Exception as exc:  # noqa: BLE001  # a bug: fail these requests, keep serving
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        finally:
            self.busy_since = None
            self.batches += 1
        for pending, outcomes in zip(batch, results, strict=True):
            if not pending.future.done():  # the client may have gone away meanwhile
                pending.future.set_result(outcomes)
