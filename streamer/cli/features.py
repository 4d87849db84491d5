"""``streamer features load``: card and merchant features into the Redis cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from streamer.cli.common import (
    Cards,
    ConfigFile,
    KeyPrefix,
    Merchants,
    ModelSpec,
    RedisUrl,
    Seed,
    clients,
)

features_app = typer.Typer(help="The Redis feature cache.", no_args_is_help=True)


@features_app.command("load")
def load(
    redis_url: RedisUrl = None,
    prefix: KeyPrefix = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="JSON Lines or CSV feature file.")
    ] = None,
    synthetic: Annotated[bool, typer.Option(help="Generate the synthetic set instead.")] = False,
    history: Annotated[
        Path | None,
        typer.Option(
            "--history",
            help="Seed the velocity state from this history (Avro or Parquet; a topic dump "
            "with partition and offset columns, or a file in its own order).",
        ),
    ] = None,
    seed: Seed = 7,
    cards: Cards = 5000,
    merchants: Merchants = 500,
    config: ConfigFile = None,
) -> None:
    """Write card and merchant features to Redis, from a file or the synthetic population."""
    from streamer.config.redaction import redact_url
    from streamer.errors import DependencyError
    from streamer.features.loader import load_command

    if sum((file is not None, synthetic, history is not None)) != 1:
        raise typer.BadParameter("give exactly one of --file, --synthetic or --history")
    factory = clients(config, redis_url=redis_url, redis_key_prefix=prefix)
    s = factory.settings
    if history is not None:
        _seed_history(factory, history)
        return
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


def _seed_history(factory: Any, history: Path) -> None:
    from streamer.config.redaction import redact_url
    from streamer.errors import DependencyError
    from streamer.features.seeding import seed_velocity

    s = factory.settings
    done = seed_velocity(
        factory.redis(timeout_ms=10_000), history, prefix=s.redis_key_prefix,
        ttl_s=s.velocity_ttl_days * 86_400,
    )  # fmt: skip
    if done.failed:
        where = redact_url(s.redis_url.get_secret_value())
        raise DependencyError(
            f"Redis at {where}: {done.failed} of {done.cards} card states not written "
            f"({done.error}); check STREAMER_REDIS_URL (or --redis-url)"
        )
    typer.echo(
        f"seeded velocity state of {done.cards} cards from {done.events} events "
        f"({done.written} written, {done.stale} already newer)",
        err=True,
    )


@features_app.command("build")
def build(
    history: Annotated[Path, typer.Argument(help="Avro or Parquet: a topic dump or a file.")],
    out: Annotated[Path, typer.Option("--out", help="Parquet file of features to write.")],
    redis_url: RedisUrl = None,
    prefix: KeyPrefix = None,
    model: ModelSpec = None,
    allow_degraded: Annotated[
        bool, typer.Option(help="Build with default snapshot features if Redis is unreachable.")
    ] = False,
    config: ConfigFile = None,
) -> None:
    """Each event's model input exactly as the stream computes it, for training and audits."""
    from streamer.backfill.history import build as build_features
    from streamer.service.assembly import offline_kernel

    factory = clients(config, redis_url=redis_url, redis_key_prefix=prefix, model=model)
    kernel = offline_kernel(factory, allow_degraded=allow_degraded)
    result = build_features(history, out, kernel=kernel, allow_degraded=allow_degraded)
    typer.echo(
        f"built {result.built} of {result.read} events into {out} ({result.rejected} rejected)",
        err=True,
    )
