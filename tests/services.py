"""Servers for the test run, started in the background and stopped at its end.

A run (or each pytest-xdist worker) needs Kafka and Redis, and a few tests a schema registry
or MLflow; each takes 5 to 50 s to start. ``Background`` starts one as soon as the run
knows it will need it, in a thread of its own, so the servers start side by side and while
the first tests that need none run; a fixture then waits for it (``get``).

The thread that starts a server also stops it, and lives as long as the server does:
local servers are spawned with ``PR_SET_PDEATHSIG``, which the kernel sends when the
*thread* that spawned them ends, not the process. A daemon thread also means a killed
pytest takes its servers along. ``ready_file`` is touched once the server is up (or failed
to start), for the scheduler of an xdist run (``tests/xdist_scheduling.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

STOP_TIMEOUT_S = 180.0


class Background(Generic[T]):
    """``make()``'s context, entered in a thread now and exited by ``close``."""

    def __init__(
        self,
        name: str,
        make: Callable[[], AbstractContextManager[T]],
        ready_file: Path | None = None,
    ) -> None:
        self.name = name
        self._make = make
        self._ready_file = ready_file
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._started = False
        self._thread = threading.Thread(target=self._run, name=f"start-{name}", daemon=True)
        self._thread.start()

    def get(self) -> T:
        """What the context yields, once it is up (its start-up error, if it failed)."""
        self._ready.wait()
        if self._error is not None and not self._started:
            raise self._error
        assert self._value is not None
        return self._value

    @property
    def started(self) -> bool:
        """The server came up (it may be stopped since)."""
        return self._started

    def request_stop(self) -> None:
        """Begin stopping, without waiting (``close`` waits): servers stop side by side."""
        self._stop.set()

    def close(self) -> None:
        """Stop the server (waiting for a start still under way) and raise what stopping
        raised. Idempotent."""
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            raise RuntimeError(f"{self.name} did not stop within {STOP_TIMEOUT_S:.0f} s")
        if self._started and self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        try:
            with self._make() as value:
                self._value, self._started = value, True
                self._signal_ready()
                self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread by get/close
            self._error = exc
        finally:
            self._signal_ready()

    def _signal_ready(self) -> None:
        """Up, or failed to start: either way the tests may come (they get the error)."""
        if not self._ready.is_set() and self._ready_file is not None:
            self._ready_file.parent.mkdir(parents=True, exist_ok=True)
            self._ready_file.touch()
        self._ready.set()
