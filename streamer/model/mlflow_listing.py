"""What MLflow holds, for ``streamer models list``: every version with its aliases.

Read-only and one line on failure (MLflow's errors translated at the boundary like every
other MLflow call). Each version shows what streamer recorded when it registered it: the
ONNX sha256 tag, the held-out metrics of its run, and the folder it came from; a version
registered by other means shows blanks there, which is itself worth seeing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streamer.errors import ModelError
from streamer.model import mlflow_registry as reg


@dataclass(frozen=True)
class MlflowVersion:
    """One registered version as ``models list`` shows it."""

    name: str
    version: str
    aliases: tuple[str, ...]
    created: datetime
    sha256: str
    metrics: dict[str, float]
    source: str

    @property
    def spec(self) -> str:
        return f"{reg.PREFIX}{self.name}/{self.version}"


def _pages(search: Any, **kwargs: Any) -> Iterator[Any]:
    """Every item of a paged MLflow search (100 per page by default)."""
    token = None
    while True:
        page = search(page_token=token, **kwargs)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def _version(found: Any, aliases: dict[str, str], mlflow: Any) -> MlflowVersion:
    tags = found.tags or {}
    metrics: dict[str, float] = {}
    if found.run_id:
        metrics = dict(mlflow.get_run(found.run_id).data.metrics)
    version = str(found.version)
    return MlflowVersion(
        name=found.name,
        version=version,
        aliases=tuple(sorted(a for a, v in aliases.items() if str(v) == version)),
        created=datetime.fromtimestamp(found.creation_timestamp / 1000, UTC),
        sha256=tags.get(reg.SHA_TAG, ""),
        metrics=metrics,
        source=tags.get("streamer.source", ""),
    )


def list_versions(mlflow: Any | None = None) -> list[MlflowVersion]:
    """Every version of every registered model, by name then version number."""
    mlflow = mlflow or reg.client()
    try:
        found = []
        for model in _pages(mlflow.search_registered_models):
            aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
            for version in _pages(
                mlflow.search_model_versions, filter_string=f"name='{model.name}'"
            ):
                found.append(_version(version, aliases, mlflow))
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated at the boundary
        raise reg.translate("listing MLflow's models", exc) from None
    return sorted(found, key=lambda v: (v.name, int(v.version)))
