"""``streamer dlq inspect|replay``: dead letters for operators."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from streamer.cli.common import Bootstrap, ConfigFile, clients
from streamer.kafka import dead_letters as dlq

dlq_app = typer.Typer(help="Dead letters: inspect and replay.", no_args_is_help=True)

DlqTopic = Annotated[
    str | None,
    typer.Option(
        "--topic", "-t", help="Dead-letter topic [default: STREAMER_DLQ_TOPIC].", show_default=False
    ),
]


def _letters(
    topic: str | None, bootstrap_servers: str | None, config: Path | None
) -> tuple[str, list[dlq.DeadLetter]]:
    factory = clients(
        config, kafka_bootstrap_servers=bootstrap_servers, require=("kafka_bootstrap_servers",)
    )
    s = factory.settings
    target = topic or s.dlq_topic or (f"{s.input_topic}.dlq" if s.input_topic else "")
    if not target:
        raise typer.BadParameter("give --topic or set STREAMER_DLQ_TOPIC", param_hint="--topic")
    from streamer.service.checks import check_kafka

    check_kafka(factory.admin(), s, {"--topic / STREAMER_DLQ_TOPIC": target}, errors=factory.errors)
    return target, list(dlq.read(factory.operator_consumer("dlq"), target))


@dlq_app.command("inspect")
def inspect(
    topic: DlqTopic = None,
    bootstrap_servers: Bootstrap = None,
    limit: Annotated[int, typer.Option(help="Dead letters to list (newest last).")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per dead letter.")
    ] = False,
    config: ConfigFile = None,
) -> None:
    """List dead letters with their reasons, and counts by stage and error class."""
    from streamer.cli.dlq_view import show

    target, letters = _letters(topic, bootstrap_servers, config)
    if as_json:
        for letter in letters:
            sys.stdout.buffer.write(orjson.dumps(letter.summary()) + b"\n")
        return
    show(target, letters, limit)


@dlq_app.command("replay")
def replay(
    topic: DlqTopic = None,
    bootstrap_servers: Bootstrap = None,
    to: Annotated[
        str, typer.Option(help="Target topic (default: each record's original topic).")
    ] = "",
    error_class: Annotated[str, typer.Option(help="Only dead letters of this error class.")] = "",
    from_offset: Annotated[int | None, typer.Option(help="Lowest original input offset.")] = None,
    to_offset: Annotated[int | None, typer.Option(help="Highest original input offset.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, send nothing.")] = False,
    config: ConfigFile = None,
) -> None:
    """Send dead letters back to the input topic (after a fix), optionally filtered."""
    target, letters = _letters(topic, bootstrap_servers, config)
    present = sorted({d.error_class for d in letters})
    if error_class and error_class not in present:
        raise typer.BadParameter(
            f"no dead letter of class {error_class!r} in {target}; "
            f"present: {', '.join(present) or 'none'}",
            param_hint="--error-class",
        )
    keep = dlq.selector(error_class or None, from_offset, to_offset)
    chosen = [d for d in letters if keep(d)]
    if dry_run:
        typer.echo(f"would replay {len(chosen)} dead letters from {target}", err=True)
        return
    factory = clients(config, kafka_bootstrap_servers=bootstrap_servers)
    sent = dlq.replay(chosen, factory.producer(), target=to or None, dlq_topic=target)
    typer.echo(f"replayed {sent} dead letters from {target}", err=True)
