"""Importing a library without the optional parts it would load and streamer never uses."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without(*names: str) -> Iterator[None]:
    """Within the block, importing any of ``names`` not imported yet fails as if it were
    not installed (which a library that treats it as optional takes in its stride);
    afterwards each imports as usual. One already imported is left as it is."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "missing"
    try:
        yield
    finally:
        for name in hidden:
            del sys.modules[name]
