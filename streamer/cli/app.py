"""The ``streamer`` command line (Typer): one module per command group, one error policy.

Anything that stops a command is one line on stderr and a documented exit code: 2 for a
usage error or a bad setting or model, 3 for an unavailable dependency (broker, topic,
Redis, schema registry), 130 for Ctrl-C. ``--debug`` (anywhere on the line) shows the
traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from streamer import __version__
from streamer.cli.capture import capture
from streamer.cli.common import STATE
from streamer.cli.consume import consume
from streamer.cli.dlq import dlq_app
from streamer.cli.features import features_app
from streamer.cli.models import models_app
from streamer.cli.monitor import monitor_app
from streamer.cli.produce import produce
from streamer.cli.run import run
from streamer.cli.score_file import score_file
from streamer.cli.serve import serve
from streamer.cli.topics import topics_app
from streamer.errors import StreamerError

OPTIONS: dict[str, Any] = {
    "help": "Real-time card-payment fraud scoring on Kafka, Redis and ONNX Runtime.",
    "no_args_is_help": True,
    "pretty_exceptions_enable": False,
    "add_completion": False,
}
app = typer.Typer(**OPTIONS)
app.command()(run)
app.command()(produce)
app.command()(consume)
app.command()(capture)
app.command("score-file")(score_file)
app.command()(serve)
app.add_typer(features_app, name="features")
app.add_typer(dlq_app, name="dlq")
app.add_typer(models_app, name="models")
app.add_typer(monitor_app, name="monitor")
app.add_typer(topics_app, name="topics")


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML settings file for every command.")
    ] = None,
) -> None:
    STATE["debug"] = STATE["debug"] or debug
    STATE["config"] = config


@app.command()
def version() -> None:
    """Print the version of streamer and of the libraries it runs on."""
    from importlib.metadata import version as installed

    import confluent_kafka

    from streamer.codec import native

    codec = (
        "C" if native.available() else "Python only: streamer was installed without a C compiler"
    )
    typer.echo(
        f"streamer {__version__} (confluent-kafka {installed('confluent-kafka')}, "
        f"librdkafka {confluent_kafka.libversion()[0]}, "
        f"onnxruntime {installed('onnxruntime')}, fastavro {installed('fastavro')}, "
        f"python {sys.version.split()[0]}, Avro codec {codec})"
    )


def parser(args: list[str]) -> typer.Typer:
    """The app that parses ``args``: for ``run`` (every pod's start-up) one with that command
    alone, the same to its user, without building every other command's parser (15 ms)."""
    if args[:1] != ["run"]:
        return app
    alone = typer.Typer(**OPTIONS)
    alone.callback()(_main)
    alone.command()(run)
    return alone


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line and a documented exit code for anything that stops us."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args:  # accepted anywhere, also after the command
        args.remove("--debug")
        STATE["debug"] = True
    try:
        code = parser(args)(args, standalone_mode=False)
    except StreamerError as exc:
        if STATE["debug"]:
            raise
        typer.echo(f"streamer: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: click's own message, exit 2
        exc.show()  # type: ignore[attr-defined]  # every click exception can show itself
        sys.exit(getattr(exc, "exit_code", 2))
    if isinstance(code, int) and code:  # a command's ``raise typer.Exit(n)``
        sys.exit(code)
