"""Safe writes to the file registry: one writer at a time per model, whole files only.

Promotions and new versions are read-modify-write on files that a running streamer reads
at any moment. A reader must see either the old or the new file (temp file + fsync +
``os.replace``), and two writers must not interleave (an exclusive ``flock`` on
``<model>/.lock``; the kernel drops it when a writer dies, so no stale lock is left behind).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamer.errors import ModelError

LOCK_FILE = ".lock"


@contextmanager
def model_lock(model_dir: Path, *, timeout_s: float = 10.0) -> Iterator[None]:
    """Hold the model's writer lock; ``ModelError`` if another writer keeps it ``timeout_s``."""
    path = model_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ModelError(
            f"cannot open {path} ({exc.strerror}): the registry must be writable to change it"
        ) from None
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ModelError(
                        f"{path} is held by another writer for over {timeout_s:g}s; "
                        "wait for it to finish and retry"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so readers see the old or the new file, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
