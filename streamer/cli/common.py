"""What every command shares: the options that name settings, and reading the settings.

Every command reads the one ``Settings`` model (``config.loader``): flags override the
environment, which overrides ``--config FILE``, which overrides defaults. A flag left out
is None and does not override anything.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # imported where used: a command loads only what it runs
    from streamer.clients import Clients
    from streamer.config.settings import Settings

STATE: dict[str, Any] = {"debug": False, "config": None}

ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML settings file (below the environment).")
]
Bootstrap = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        "-b",
        help="Kafka bootstrap servers [default: STREAMER_KAFKA_BOOTSTRAP_SERVERS].",
        show_default=False,
    ),
]
RegistryUrl = Annotated[
    str | None,
    typer.Option(
        "--schema-registry-url",
        help="[default: STREAMER_SCHEMA_REGISTRY_URL]",
        show_default=False,
    ),
]
WireFormatOption = Annotated[
    str | None,
    typer.Option("--format", "-f", help="confluent | single-object | raw", show_default=False),
]
ModelsDir = Annotated[
    Path | None,
    typer.Option(
        "--models-dir", help="[default: STREAMER_MODELS_DIR or models]", show_default=False
    ),
]
RedisUrl = Annotated[
    str | None, typer.Option(help="[default: STREAMER_REDIS_URL]", show_default=False)
]
KeyPrefix = Annotated[
    str | None, typer.Option(help="[default: STREAMER_REDIS_KEY_PREFIX]", show_default=False)
]
ModelSpec = Annotated[
    str | None, typer.Option(help="[default: STREAMER_MODEL]", show_default=False)
]
Seed = Annotated[int, typer.Option(help="Seed of the synthetic population (cards, merchants).")]
Cards = Annotated[int, typer.Option(help="Cards in the synthetic population.")]
Merchants = Annotated[int, typer.Option(help="Merchants in the synthetic population.")]


def settings(config: Path | None = None, **flags: Any) -> Settings:
    """The settings for a command: ``flags`` (None: not given) over environment over file.

    ``require`` (a tuple of field names) lists what the command cannot do without.
    """
    from streamer.config.loader import load_settings

    require = flags.pop("require", ())
    return load_settings(config or STATE["config"], require=require, **flags)


def clients(config: Path | None = None, **flags: Any) -> Clients:
    """The client factory for an operator command (every command but ``run``).

    An operator command reports what stops it in one line of its own (``streamer: ...``);
    librdkafka's retry chatter (``Connect to ... failed`` for every retry) would bury it,
    so it is kept out of the terminal unless ``--debug`` asks for everything. Our own
    warnings (a Redis round trip failing midway) come out as structured log lines.
    """
    from streamer.clients import Clients
    from streamer.observability import logs

    loaded = settings(config, **flags)
    # An operator command speaks in its own lines; the log shows only what went wrong.
    level = "DEBUG" if STATE["debug"] else max(loaded.log_level, "WARNING", key=_severity)
    logs.configure(level, json=loaded.log_format == "json")
    quiet_librdkafka(not STATE["debug"])
    return Clients(loaded)


def _severity(level: str) -> int:
    return logging.getLevelName(level) if isinstance(logging.getLevelName(level), int) else 0


def quiet_librdkafka(quiet: bool = True) -> None:
    """Keep librdkafka's log lines (and ``error_cb`` reports) off stderr when ``quiet``."""
    from streamer.kafka.membership import LIBRDKAFKA_LOGGER

    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    logger.propagate = not quiet
    if quiet and not logger.handlers:
        logger.addHandler(logging.NullHandler())


def topic_command(
    config: Path | None, topic: str | None, default: str, **flags: Any
) -> tuple[Clients, str, Any]:
    """``produce``/``consume``: the clients, the topic (``--topic`` or the setting named by
    ``default``), checked to exist, and the schema registry client (checked when set)."""
    from streamer.service.checks import check_kafka, check_schema_registry

    factory = clients(config, require=("kafka_bootstrap_servers",), **flags)
    s = factory.settings
    target = topic or str(getattr(s, default))
    if not target:
        raise typer.BadParameter(
            f"give --topic or set STREAMER_{default.upper()}", param_hint="--topic"
        )
    check_kafka(factory.admin(), s, {"--topic": target}, errors=factory.errors)
    registry = factory.schema_registry()
    check_schema_registry(s, registry)
    return factory, target, registry
