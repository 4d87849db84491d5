"""``streamer models list|verify``: the file model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamer.cli.common import ModelsDir, settings

models_app = typer.Typer(help="The model registry in STREAMER_MODELS_DIR.", no_args_is_help=True)


@models_app.command("list")
def list_(models_dir: ModelsDir = None) -> None:
    """Every registered model version with its held-out metrics, thresholds and problems."""
    from rich.console import Console
    from rich.table import Table

    from streamer.model.registry import list_models

    directory = settings(models_dir=models_dir).models_dir
    table = Table(title=f"models in {directory}")
    for column in ("model", "created", "ROC-AUC", "PR-AUC", "review", "decline", "problem"):
        table.add_column(column)
    for entry in list_models(directory):
        meta = entry.metadata
        problem = entry.problem or _verify(entry.name, entry.version, directory)
        if meta is None:
            table.add_row(f"{entry.name}@{entry.version}", "", "", "", "", "", problem)
            continue
        table.add_row(
            f"{meta.name}@{meta.version}",
            meta.created_at.date().isoformat(),
            f"{meta.metrics.get('roc_auc', float('nan')):.3f}",
            f"{meta.metrics.get('pr_auc', float('nan')):.3f}",
            f"{meta.thresholds.review:.4f}",
            f"{meta.thresholds.decline:.4f}",
            problem,
        )
    Console().print(table)


def _verify(name: str, version: str, directory: Path) -> str:
    """What loading this version as ``run`` would refuse (hash, ONNX signature), or ""."""
    from streamer.errors import ModelError
    from streamer.model.registry import load_model

    try:
        load_model(f"{name}@{version}", directory)
    except ModelError as exc:
        return str(exc)
    return ""


@models_app.command("verify")
def verify(
    spec: Annotated[
        str | None,
        typer.Argument(help="name, name@version or a path [default: STREAMER_MODEL]"),
    ] = None,
    models_dir: ModelsDir = None,
) -> None:
    """Load a model as `streamer run` would: hash, ONNX signature and features checked."""
    from streamer.model.scorer import Scorer
    from streamer.service import load

    model = load(settings(model=spec, models_dir=models_dir))
    Scorer(model)  # ONNX Runtime accepts it
    meta = model.metadata
    typer.echo(
        f"{meta.name}@{meta.version} ok: sha256 {meta.sha256[:12]}…, "
        f"{len(meta.feature_names)} features, {model.path}"
    )
