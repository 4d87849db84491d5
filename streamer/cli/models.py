"""``streamer models list|verify``: the file model registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.table import Table

from streamer.cli.common import ModelsDir, settings
from streamer.model.aliases import AliasChange

models_app = typer.Typer(help="The model registry in STREAMER_MODELS_DIR.", no_args_is_help=True)


@models_app.command("list")
def list_(models_dir: ModelsDir = None) -> None:
    """Every registered model version with its held-out metrics, thresholds and problems."""
    from rich.console import Console

    from streamer.model.aliases import read_aliases
    from streamer.model.registry import list_models

    directory = settings(models_dir=models_dir).models_dir
    table = Table(title=f"models in {directory}")
    columns = ("model", "aliases", "created", "ROC-AUC", "PR-AUC", "review", "decline", "problem")
    for column in columns:
        table.add_column(column)
    entries = list_models(directory)
    for entry in entries:
        meta, aliases = entry.metadata, ", ".join(entry.aliases)
        if meta is None:
            name = f"{entry.name}@{entry.version}"
            table.add_row(name, aliases, "", "", "", "", "", entry.problem or "")
            continue
        table.add_row(
            f"{meta.name}@{meta.version}",
            aliases,
            meta.created_at.date().isoformat(),
            f"{meta.metrics.get('roc_auc', float('nan')):.3f}",
            f"{meta.metrics.get('pr_auc', float('nan')):.3f}",
            f"{meta.thresholds.review:.4f}",
            f"{meta.thresholds.decline:.4f}",
            entry.problem or "",
        )
    console = Console()
    console.print(table)
    for name in sorted({e.name for e in entries}):
        history = read_aliases(directory / name).history
        if history:
            console.print(_history(name, history))


def _history(name: str, changes: Sequence[AliasChange]) -> Table:
    table = Table(title=f"{name}: alias history")
    for column in ("when", "alias", "from", "to", "reason"):
        table.add_column(column)
    for change in changes:
        table.add_row(
            change.at.isoformat(timespec="seconds"),
            change.alias,
            change.from_version or "",
            change.to_version,
            change.reason,
        )
    return table


@models_app.command("promote")
def promote(
    spec: Annotated[str, typer.Argument(help="name@version (or name@alias) to point at")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="champion, challenger, …")],
    reason: Annotated[str, typer.Option(help="Why; kept in the alias history.")] = "",
    models_dir: ModelsDir = None,
) -> None:
    """Move an alias to a verified version; running streamers follow it within seconds."""
    from streamer.model.promotion import promote as move

    directory = settings(models_dir=models_dir).models_dir
    change = move(directory, spec, alias=alias, reason=reason)
    if change.from_version == change.to_version:
        typer.echo(f"{alias} already points at {change.to_version}; nothing recorded", err=True)
        return
    typer.echo(f"{alias}: {change.from_version or '(new)'} -> {change.to_version}", err=True)


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
