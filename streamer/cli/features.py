"""``streamer features load``: card and merchant features into the Redis cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamer.cli.common import Cards, ConfigFile, Merchants, Seed, clients

features_app = typer.Typer(help="The Redis feature cache.", no_args_is_help=True)


@features_app.command("load")
def load(
    redis_url: Annotated[
        str | None, typer.Option(help="[default: STREAMER_REDIS_URL]", show_default=False)
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="[default: STREAMER_REDIS_KEY_PREFIX]", show_default=False)
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="JSON Lines or CSV feature file.")
    ] = None,
    synthetic: Annotated[bool, typer.Option(help="Generate the synthetic set instead.")] = False,
    seed: Seed = 7,
    cards: Cards = 5000,
    merchants: Merchants = 500,
    config: ConfigFile = None,
) -> None:
    """Write card and merchant features to Redis, from a file or the synthetic population."""
    from streamer.config.redaction import redact_url
    from streamer.errors import DependencyError
    from streamer.features.loader import load_command

    if (file is None) == (not synthetic):
        raise typer.BadParameter("give exactly one of --file or --synthetic")
    factory = clients(config, redis_url=redis_url, redis_key_prefix=prefix)
    s = factory.settings
    try:
        written = load_command(
            factory.redis(timeout_ms=10_000),
            prefix=s.redis_key_prefix,
            file=file,
            seed=seed,
            n_cards=cards,
            n_merchants=merchants,
        )
    except DependencyError as exc:
        where = redact_url(s.redis_url.get_secret_value())
        raise DependencyError(
            f"Redis at {where}: {exc}; check STREAMER_REDIS_URL (or --redis-url)"
        ) from None
    typer.echo(f"wrote {written}", err=True)
