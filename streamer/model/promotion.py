"""Moving an alias to a version: verified first, then recorded atomically with its reason.

``promote`` is what ``streamer models promote`` and a CI job call. It refuses a version
that would be refused at start-up (hash, ONNX signature, features), so an alias can only
ever point at something a streamer will load. The history in ``aliases.json`` is
append-only: the file is re-read under the model's writer lock, so two concurrent
promoters both land in it, one after the other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from streamer.errors import ModelError
from streamer.model.aliases import ALIAS, AliasChange, Aliases, aliases_path, read_aliases
from streamer.model.files import model_lock, write_atomic
from streamer.model.registry import load_model
from streamer.model.versions import list_versions


def promote(
    models_dir: Path,
    spec: str,
    *,
    alias: str,
    reason: str = "",
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AliasChange:
    """Point ``alias`` of ``spec``'s model at ``spec``'s version (``name@version`` or
    ``name@other-alias``) and append the change to the history; returns the change.

    A promotion to the version the alias already points at changes nothing and records
    nothing (the returned change has ``from_version == to_version``).
    """
    name, sep, _ = spec.partition("@")
    if not sep or "/" in spec:
        raise ModelError(f"promote {spec!r}: name the version, e.g. {name or 'fraud-gbt'}@2")
    if not ALIAS.fullmatch(alias):
        raise ModelError(f"alias {alias!r}: start with a letter; letters, digits, _ and - only")
    model_dir = models_dir / name
    if alias in list_versions(model_dir):
        raise ModelError(f"alias {alias!r} is also a version of {name}; choose another alias")
    if "\n" in reason:
        raise ModelError("the reason must be one line")
    loaded = load_model(spec, models_dir)  # ModelError: refused, alias untouched
    version = loaded.path.parent.name
    with model_lock(model_dir):
        current = read_aliases(model_dir)
        before = current.aliases.get(alias)
        change = AliasChange(
            at=now(), alias=alias, from_version=before, to_version=version, reason=reason
        )
        if before == version:
            return change
        updated = Aliases(
            aliases={**current.aliases, alias: version}, history=(*current.history, change)
        )
        write_atomic(aliases_path(model_dir), updated.to_json())
    return change
