"""``streamer models gate``: may a candidate version replace the champion?

Replays the same events through both versions on the stream's own feature path, prints
a table of the checks for people, writes the JSON report for machines (and for
``streamer models promote --require-gate``), and exits 0 on pass, 1 on fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from streamer.cli.common import ConfigFile, ModelsDir, clients
from streamer.model.gate_bounds import Bounds

if TYPE_CHECKING:
    from rich.table import Table

    from streamer.clients import Clients
    from streamer.model.gate import GateReport, ModelRef, Rates

_DEFAULT = Bounds()


def gate(
    candidate: Annotated[str, typer.Argument(help="fraud-gbt@3 or models:/fraud-gbt/3")],
    against: Annotated[
        str, typer.Option("--against", help="the champion: fraud-gbt@champion, models:/…")
    ],
    file: Annotated[Path | None, typer.Option("--file", help="Avro file of events")] = None,
    topic: Annotated[str | None, typer.Option("--topic", help="replay from its start")] = None,
    max_events: Annotated[int, typer.Option("--max-events", min=1)] = 20_000,
    report: Annotated[Path | None, typer.Option("--report", help="write the JSON here")] = None,
    roc_auc_drop: Annotated[float, typer.Option(min=0)] = _DEFAULT.roc_auc_drop,
    pr_auc_drop: Annotated[float, typer.Option(min=0)] = _DEFAULT.pr_auc_drop,
    min_agreement: Annotated[float, typer.Option(min=0, max=1)] = _DEFAULT.min_agreement,
    review_rate_change: Annotated[
        float, typer.Option(min=0, help="relative to the champion's rate")
    ] = _DEFAULT.review_rate_change,
    decline_rate_change: Annotated[
        float, typer.Option(min=0, help="relative to the champion's rate")
    ] = _DEFAULT.decline_rate_change,
    p99_batch_ms: Annotated[float, typer.Option(min=0)] = _DEFAULT.p99_batch_ms,
    models_dir: ModelsDir = None,
    config: ConfigFile = None,
) -> None:
    """Score the same events with both versions; pass only if every check holds."""
    if (file is None) == (topic is None):
        raise typer.BadParameter("give exactly one of --file or --topic", param_hint="--file")
    need = ("kafka_bootstrap_servers",) if topic else ()
    factory = clients(config, models_dir=models_dir, require=need)
    bounds = Bounds(
        roc_auc_drop=roc_auc_drop,
        pr_auc_drop=pr_auc_drop,
        min_agreement=min_agreement,
        review_rate_change=review_rate_change,
        decline_rate_change=decline_rate_change,
        p99_batch_ms=p99_batch_ms,
    )
    from rich.console import Console

    result = _verdict(factory, (candidate, against), (file, topic, max_events), bounds)
    Console(width=130).print(_table(result))
    if report is not None:
        result.write(report)
    if not result.passed:
        typer.echo(f"gate FAILED: {'; '.join(result.failures())}", err=True)
        raise SystemExit(1)  # not typer.Exit: main() runs click non-standalone and drops it
    typer.echo("gate passed", err=True)


def _verdict(
    factory: Clients,
    specs: tuple[str, str],
    source: tuple[Path | None, str | None, int],
    bounds: Bounds,
) -> GateReport:
    from streamer.model import gate_replay
    from streamer.model.gate import report
    from streamer.model.registry import load_model

    directory = factory.settings.models.models_dir
    new, old = (load_model(spec, directory) for spec in specs)
    file, topic, max_events = source
    events = (
        gate_replay.file_events(file)
        if file is not None
        else gate_replay.topic_events(factory, topic or "", max_events)
    )
    runs = gate_replay.replay_both(factory, new, old, events)
    return report((specs[0], new), (specs[1], old), runs, bounds)


def named(ref: ModelRef) -> str:
    """The spec as the user gave it (``models:/fraud-gbt/2``, ``fraud-gbt@champion``), with
    the version it resolved to when the spec does not already say it."""
    if ref.spec.endswith((f"/{ref.version}", f"@{ref.version}")):
        return ref.spec
    return f"{ref.spec} (version {ref.version})"


def _shares(rates: Rates | None) -> str:
    if rates is None:
        return ""
    cand, champ = rates.candidate, rates.champion
    return (
        f"REVIEW {cand.review:.2%} vs {champ.review:.2%}, "
        f"DECLINE {cand.decline:.2%} vs {champ.decline:.2%} (candidate vs champion)"
    )


def _table(result: GateReport) -> Table:
    from rich.table import Table

    table = Table(
        title=f"{named(result.candidate)} vs {named(result.champion)} "
        f"on {result.events} events: {'PASS' if result.passed else 'FAIL'}",
        caption=_shares(result.rates),
    )
    for column in ("check", "result", "value", "bound", "why"):
        table.add_column(column)
    for check in result.checks:
        mark = "[green]pass[/]" if check.passed else "[red]FAIL[/]"
        table.add_row(check.name, mark, str(check.value), check.bound, check.detail)
    return table
