"""``streamer score-file``: batch deployment with the stream's kernel, model and features.

Avro or Parquet in and out, by extension. Redis is asked once before anything is scored:
a backfill that would be scored with default features stops at once (exit 3) unless
``--allow-degraded``; a Redis lost midway stops it too, and nothing is left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamer.cli.common import ConfigFile, KeyPrefix, ModelsDir, ModelSpec, RedisUrl, clients


def score_file(
    source: Annotated[
        Path, typer.Argument(help="TransactionEvents: .avro container file or .parquet.")
    ],
    target: Annotated[Path, typer.Argument(help="ScoredEvents to write: .avro or .parquet.")],
    rejects: Annotated[
        Path | None,
        typer.Option(help="JSON Lines of rejected events (default: <target>.rejects.jsonl)."),
    ] = None,
    redis_url: RedisUrl = None,
    prefix: KeyPrefix = None,
    model: ModelSpec = None,
    models_dir: ModelsDir = None,
    chunk: Annotated[
        int, typer.Option(min=1, help="Events per Redis round trip and model run.")
    ] = 5000,
    allow_degraded: Annotated[
        bool, typer.Option(help="Score with default features if Redis is unreachable.")
    ] = False,
    config: ConfigFile = None,
) -> None:
    """Batch deployment: score a file (backfills, replays) with the stream's code and model."""
    from streamer.backfill import check_source
    from streamer.backfill import score_file as run_file
    from streamer.service.assembly import offline_kernel

    factory = clients(
        config, redis_url=redis_url, redis_key_prefix=prefix, model=model, models_dir=models_dir
    )
    check_source(source)  # a wrong file is reported before Redis is asked
    kernel = offline_kernel(factory, allow_degraded=allow_degraded)
    result = run_file(
        source,
        target,
        kernel=kernel,
        rejects=rejects,
        chunk_size=chunk,
        allow_degraded=allow_degraded,
    )
    rate = result.read / result.seconds if result.seconds else 0.0
    typer.echo(
        f"{result.read} read, {result.scored} scored {dict(result.decisions)}, "
        f"{result.rejected} rejected, {result.degraded} degraded, "
        f"{result.seconds:.1f}s ({rate:,.0f} events/s)",
        err=True,
    )
