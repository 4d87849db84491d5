"""Version directories: how they sort, which comes next, and how a new one is published.

Versions are immutable. A new version is written into a hidden staging directory and
renamed into place under the model's writer lock, so a reader never sees a half-written
version (a bare name resolves to the highest version at any moment) and nothing ever
writes into a version directory that already exists.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from streamer.errors import ModelError
from streamer.model.files import model_lock
from streamer.model.metadata import NAME


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Natural sort key: numeric parts compare as numbers and after textual ones."""
    return tuple(
        (1, int(part), "") if part.isdigit() else (0, 0, part)
        for part in re.split(r"[.\-_]", version)
    )


def list_versions(model_dir: Path) -> list[str]:
    """Version directory names in ``model_dir``, lowest first (hidden staging dirs skipped)."""
    if not model_dir.is_dir():
        return []
    found = [p.name for p in model_dir.iterdir() if p.is_dir() and NAME.fullmatch(p.name)]
    return sorted(found, key=version_key)


def next_version(model_dir: Path) -> str:
    """One above the highest whole-number version (``"1"`` for a new model)."""
    numbers = [int(v) for v in list_versions(model_dir) if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def create_version(
    models_dir: Path,
    name: str,
    write: Callable[[Path, str], None],
    *,
    version: str | None = None,
) -> Path:
    """Publish a new version of ``name``: ``write(directory, version)`` fills a staging
    directory, which then becomes ``models_dir/name/<version>``.

    ``version`` defaults to ``next_version``; an explicit one that already exists is a
    ``ModelError`` (released versions are never rewritten). If ``write`` raises, nothing
    is published.
    """
    if not NAME.fullmatch(name) or (version is not None and not NAME.fullmatch(version)):
        raise ModelError(f"model {name!r} version {version!r}: use letters, digits, . _ -")
    model_dir = models_dir / name
    model_dir.mkdir(parents=True, exist_ok=True)
    with model_lock(model_dir):
        chosen = version or next_version(model_dir)
        target = model_dir / chosen
        if target.exists():
            raise ModelError(
                f"{target} already exists and versions are immutable; "
                "leave --version out to get the next one"
            )
        staging = model_dir / f".staging-{chosen}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            write(staging, chosen)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target
