"""``streamer models list|verify|promote|register|gate``: the file registry and MLflow.

Specs starting with ``models:/`` (``models:/fraud-gbt@champion``, ``models:/fraud-gbt/3``)
are MLflow's (``MLFLOW_TRACKING_URI``); everything else is the file registry's.

Standard output carries what a script reads (``register`` prints only the new URI, so
``uri=$(streamer models register DIR)`` works); MLflow's own chatter goes to standard error.
Tables are printed at their natural width when the output is not a terminal, so a pipe or a
file never gets names cut at 80 columns.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from streamer.cli.common import ModelsDir, settings
from streamer.cli.gate import gate

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from streamer.model.aliases import AliasChange

models_app = typer.Typer(
    help="The model registry in STREAMER_MODELS_DIR, or MLflow (models:/…).",
    no_args_is_help=True,
)
models_app.command("gate")(gate)


def console() -> Console:
    """A terminal's own width; at natural width (no cut, no wrap) into a pipe or a file."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=100_000, no_color=True)


def _table(title: str) -> Table:
    from rich.table import Table

    return Table(title=title)


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Everything written to standard output meanwhile (MLflow's print calls and the log
    handlers it set up on the file descriptor) goes to standard error instead."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


@models_app.command("list")
def list_(models_dir: ModelsDir = None) -> None:
    """Every registered model version with its held-out metrics, thresholds and problems;
    MLflow's versions and aliases too when MLFLOW_TRACKING_URI is set."""
    from streamer.model.aliases import read_aliases
    from streamer.model.registry import list_models

    directory = settings(models_dir=models_dir).models_dir
    table = _table(f"models in {directory}")
    columns = ("model", "aliases", "created", "ROC-AUC", "PR-AUC", "review", "decline", "problem")
    for column in columns:
        table.add_column(column, no_wrap=column != "problem")
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
    out = console()
    out.print(table)
    for name in sorted({e.name for e in entries}):
        history = read_aliases(directory / name).history
        if history:
            out.print(_history(name, history))
    if os.environ.get("MLFLOW_TRACKING_URI"):
        out.print(_mlflow_table())


def _mlflow_table() -> Table:
    from streamer.config.redaction import redact_url
    from streamer.model.mlflow_listing import list_versions

    table = _table(f"MLflow at {redact_url(os.environ['MLFLOW_TRACKING_URI'])}")
    for column in ("model", "aliases", "created", "sha256", "ROC-AUC", "PR-AUC", "from"):
        table.add_column(column, no_wrap=True)
    for found in list_versions():
        table.add_row(
            found.spec,
            ", ".join(found.aliases),
            found.created.isoformat(timespec="seconds"),
            found.sha256[:12] or "(none: not registered by streamer)",
            _metric(found.metrics, "roc_auc"),
            _metric(found.metrics, "pr_auc"),
            found.source,
        )
    return table


def _metric(metrics: dict[str, float], name: str) -> str:
    return f"{metrics[name]:.3f}" if name in metrics else ""


def _history(name: str, changes: Sequence[AliasChange]) -> Table:
    table = _table(f"{name}: alias history")
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
    spec: Annotated[str, typer.Argument(help="name@version, or models:/name/version")],
    alias: Annotated[str, typer.Option("--alias", "-a", help="champion, challenger, …")],
    reason: Annotated[str, typer.Option(help="Why; kept in the alias history.")] = "",
    require_gate: Annotated[
        Path | None,
        typer.Option(
            help="A gate report that must have passed for this exact candidate "
            "and the champion it was gated against."
        ),
    ] = None,
    models_dir: ModelsDir = None,
) -> None:
    """Move an alias to a verified version; running streamers follow it within seconds."""
    from streamer.model.promotion import promote as move

    directory = settings(models_dir=models_dir).models_dir
    if require_gate is not None:
        _check_gate(require_gate, spec, directory)
    if spec.startswith("models:/"):
        from streamer.model.mlflow_publish import promote as move_mlflow

        before, after = move_mlflow(spec, alias=alias, reason=reason)
    else:
        change = move(directory, spec, alias=alias, reason=reason)
        before, after = change.from_version, change.to_version
    if before == after:
        typer.echo(f"{alias} already points at {after}; nothing recorded", err=True)
        return
    typer.echo(f"{alias}: {before or '(new)'} -> {after}", err=True)


def _check_gate(path: Path, spec: str, directory: Path) -> None:
    """Refuse unless ``path`` is a passed report for ``spec`` against the champion as it is
    now (name, version and sha256 of both: a champion moved since the gate voids it)."""
    from streamer.errors import ModelError
    from streamer.model.gate import GateReport, ModelRef
    from streamer.model.registry import load_model

    report = GateReport.read(path)
    candidate = ModelRef.of(spec, load_model(spec, directory))
    champion = ModelRef.of(report.champion.spec, load_model(report.champion.spec, directory))
    problem = None
    if not report.passed:
        problem = f"it failed ({'; '.join(report.failures())})"
    elif (why := report.candidate.mismatch(candidate)) is not None:
        problem = why
    elif (why := report.champion.mismatch(champion)) is not None:
        problem = f"the champion changed since: {why}"
    if problem:
        raise ModelError(
            f"gate report {path} does not allow promoting {spec}: {problem}; "
            "run `streamer models gate` again"
        )


@models_app.command("register")
def register(
    directory: Annotated[Path, typer.Argument(help="a version folder, e.g. models/fraud-gbt/3")],
    name: Annotated[str | None, typer.Option(help="registered model name [metadata's]")] = None,
    force: Annotated[
        bool, typer.Option(help="register even an exact duplicate of a registered version")
    ] = False,
) -> None:
    """Log a verified version folder to MLflow as a NEW model version (MLFLOW_TRACKING_URI)."""
    from streamer.model.mlflow_publish import register as publish

    with stdout_to_stderr():
        done = publish(directory, name=name, force=force)
    typer.echo(f"models:/{done.name}/{done.version}")
    typer.echo(f"registered (sha256 {done.sha256[:12]}…, run {done.run_id})", err=True)


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
