"""``streamer serve``: the scoring API on the stream's kernel (needs the ``serve`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamer.cli.common import ConfigFile, settings
from streamer.errors import ConfigError


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8080,
    batch_wait_ms: Annotated[
        float,
        typer.Option(
            min=0,
            max=5000,
            help="Hold a batch open this long for later requests (0: a batch is what queued "
            "while the last one was scored).",
        ),
    ] = 0.0,
    max_batch: Annotated[
        int, typer.Option(min=1, max=100_000, help="Events per kernel call (1: batching off).")
    ] = 256,
    max_request_events: Annotated[
        int, typer.Option(min=1, max=10_000, help="Events allowed in one /v1/score:batch.")
    ] = 100,
    max_body_bytes: Annotated[
        int, typer.Option(min=1024, help="Larger request bodies get HTTP 413.")
    ] = 1_000_000,
    publish: Annotated[
        bool, typer.Option(help="Also produce every decision to STREAMER_OUTPUT_TOPIC (audit).")
    ] = False,
    api_keys_file: Annotated[
        Path | None,
        typer.Option(help="File of API keys, one per line; without it the API is open."),
    ] = None,
    graceful_timeout_s: Annotated[
        float, typer.Option(min=0, help="How long SIGTERM waits for in-flight requests.")
    ] = 30.0,
    keep_alive_s: Annotated[
        int,
        typer.Option(
            min=1,
            help="How long an idle keep-alive connection stays open; keep it above the "
            "idle timeout of the callers' connection pools and load balancers.",
        ),
    ] = 75,
    config: ConfigFile = None,
) -> None:
    """Score over HTTP (FastAPI) with the stream's kernel, features, model and thresholds."""
    try:
        from streamer.serve.auth import read_api_keys
        from streamer.serve.runtime import ServeOptions
        from streamer.serve.server import serve as run_server
    except ImportError as exc:
        raise ConfigError(
            f"streamer serve needs the serve extra ({exc.name} is missing): "
            "pip install 'streamer[serve]'"
        ) from None
    from streamer.observability import logs

    loaded = settings(config, require=("output_topic",) if publish else ())
    logs.configure(loaded.log_level, json=loaded.log_format == "json")
    options = ServeOptions(
        host=host,
        port=port,
        batch_wait_ms=batch_wait_ms,
        max_batch=max_batch,
        max_request_events=max_request_events,
        max_body_bytes=max_body_bytes,
        publish=publish,
        api_keys=read_api_keys(api_keys_file) if api_keys_file else frozenset(),
        graceful_timeout_s=graceful_timeout_s,
        keep_alive_s=keep_alive_s,
    )
    run_server(loaded, options)
