"""Following a model spec (``fraud-gbt@champion``) while the stream runs: hot swap, off the
hot path.

The consumer loop must never wait for a model load (reading ~0.3 MB, hashing it, building
and warming an ONNX Runtime session takes tens of milliseconds or more). So a daemon thread
polls cheaply (a ``stat`` of ``aliases.json``, a directory listing for a bare name; nothing
is loaded while nothing changed), and when the spec resolves to another version it loads
and verifies it exactly as start-up does, warms a ``Scorer`` and hands over a ready object.
The loop swaps it in between two batches. A version that fails is refused once, with the
reason, and not retried until its files or the alias change again; the old model keeps
scoring. Callers never see an exception from here: outcomes are values.

    watcher = ModelWatcher("fraud-gbt@champion", models_dir, interval_s=5)
    watcher.start(on_ready=swap_between_batches, on_refused=report)
    signal.signal(signal.SIGHUP, lambda *_: watcher.check_now())
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamer.errors import ModelError
from streamer.model.aliases import aliases_path
from streamer.model.metadata import LoadedModel
from streamer.model.registry import load_model, resolve
from streamer.model.scorer import Scorer

log = logging.getLogger(__name__)

_Stat = tuple[int, int, int] | None  # (inode, size, mtime_ns), None when missing


@dataclass(frozen=True)
class Ready:
    """A verified, warmed model to swap in: ``scorer.score`` is ready for the next batch."""

    version: str
    model: LoadedModel = field(repr=False)
    scorer: Scorer = field(repr=False)


@dataclass(frozen=True)
class Refused:
    """A version (None: the spec itself no longer resolves) that must not replace the current."""

    version: str | None
    reason: str


Outcome = Ready | Refused


def _stat(path: Path) -> _Stat:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ModelWatcher:
    """Notices when ``spec`` resolves to another version and prepares that version.

    ``current_version`` is the version directory in use (by default what ``spec`` resolves
    to now). After ``Ready`` the watcher takes the new version as current: the caller is
    expected to swap it in. Thread-safe: ``poll``, ``load_candidate`` and ``run_once``
    may be called from any thread; loads are serialized.
    """

    def __init__(
        self,
        spec: str,
        models_dir: Path,
        *,
        interval_s: float = 5.0,
        current_version: str | None = None,
        warm_rows: int = 256,
        intra_op_threads: int = 1,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.spec = spec
        self.models_dir = models_dir
        self.interval_s = interval_s
        self._warm_rows = warm_rows
        self._threads = intra_op_threads
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        name = spec.partition("@")[0]
        self._aliases_file = aliases_path(models_dir / name)
        self._aliases_stat: _Stat = _stat(self._aliases_file)
        self._current = current_version or resolve(spec, models_dir).parent.name
        self._target: str | None = self._current
        self._problem: str | None = None
        self._refused: tuple[str | None, str] | None = None  # (version, fingerprint)

    @property
    def current_version(self) -> str:
        return self._current

    def poll(self) -> bool:
        """Whether the spec now names another version than the current one (or no longer
        resolves) and that has not been refused as it is. Cheap; never raises."""
        with self._lock:
            return self._poll_locked()

    def _poll_locked(self) -> bool:
        stat = _stat(self._aliases_file)
        if "@" not in self.spec or stat != self._aliases_stat or self._problem is not None:
            self._aliases_stat = stat
            try:
                self._target, self._problem = resolve(self.spec, self.models_dir).parent.name, None
            except ModelError as exc:
                self._target, self._problem = None, str(exc)
        if self._target == self._current and self._problem is None:
            return False
        return self._refused != (self._target, self._fingerprint())

    def _fingerprint(self) -> str:
        if self._target is None:
            return f"{self._aliases_stat}|{self._problem}"
        version_dir = self.models_dir / self.spec.partition("@")[0] / self._target
        names = ("model.onnx", "metadata.json", "explainer.txt")  # a fixed explainer: retried
        files = [_stat(version_dir / n) for n in names]
        return f"{self._aliases_stat}|{files}"

    def load_candidate(self) -> Outcome | None:
        """Load, verify and warm the version the spec names now: ``Ready``, ``Refused``, or
        None when there is nothing new. Slow (off the hot path); never raises."""
        with self._lock:
            if not self._poll_locked():
                return None
            version, fingerprint = self._target, self._fingerprint()
            try:
                outcome = self._prepare(version)
            except Exception as exc:  # noqa: BLE001 - a refusal must never kill the caller
                outcome = Refused(version, f"{type(exc).__name__}: {exc}")
            if isinstance(outcome, Ready):
                self._current, self._refused = outcome.version, None
            else:
                self._refused = (version, fingerprint)
            return outcome

    def _prepare(self, version: str | None) -> Outcome:
        if version is None:
            return Refused(None, self._problem or f"{self.spec} does not resolve")
        try:
            model = self._load(version)
        except ModelError as exc:
            return Refused(version, str(exc))
        scorer = Scorer(model, intra_op_threads=self._threads)
        width = len(model.metadata.feature_names)
        warm = scorer.score(np.zeros((self._warm_rows, width), dtype=np.float32))
        if not np.all((warm >= 0.0) & (warm <= 1.0)):
            return Refused(version, "warm-up scores are not probabilities in [0, 1]")
        return Ready(version, model, scorer)

    def _load(self, version: str) -> LoadedModel:
        """Load and verify one version (the MLflow watcher loads from MLflow instead)."""
        return load_model(f"{self.spec.partition('@')[0]}@{version}", self.models_dir)

    def run_once(self) -> Outcome | None:
        """``load_candidate`` under its other name: one synchronous watch cycle."""
        return self.load_candidate()

    def start(
        self,
        *,
        on_ready: Callable[[Ready], None],
        on_refused: Callable[[Refused], None],
    ) -> None:
        """Watch in a daemon thread: a cycle every ``interval_s`` or at ``check_now``."""
        if self._thread is not None:
            raise RuntimeError("the watcher is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(on_ready, on_refused), name="model-watcher", daemon=True
        )
        self._thread.start()

    def check_now(self) -> None:
        """Run a cycle as soon as possible (safe from a signal handler: it only sets a flag)."""
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the thread (waits for a load in progress up to ``timeout_s``)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(
        self, on_ready: Callable[[Ready], None], on_refused: Callable[[Refused], None]
    ) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # a check_now during the load below still wakes the next wait
            outcome = self.load_candidate()
            if isinstance(outcome, Refused):
                log.warning("model %s version %s refused: %s", self.spec, outcome.version,
                            outcome.reason)  # fmt: skip
            elif outcome is not None:
                log.info("model %s version %s ready", self.spec, outcome.version)
            try:
                if isinstance(outcome, Ready):
                    on_ready(outcome)
                elif isinstance(outcome, Refused):
                    on_refused(outcome)
            except Exception:  # a broken callback must not end the watch
                log.exception("model watcher callback failed for %s", self.spec)
            self._wake.wait(self.interval_s)
