"""Running the API under uvicorn: one process, one event loop, the kernel on that loop.

The socket is bound here, before uvicorn starts, so a port in use is one clear line (exit
2) instead of uvicorn's log and exit. SIGTERM/SIGINT stop accepting connections, let
in-flight requests finish (up to ``graceful_timeout_s``), then the lifespan drains the
batcher and flushes the audit producer. Scale with processes (pods), not threads: the
kernel is GIL-bound.

Idle keep-alive connections stay open for ``keep_alive_s`` (75 s), not uvicorn's 5 s: an
authorization gateway keeps a pool of connections, and when the server closes one just as
the caller reuses it, that authorization fails (the caller sees the connection close
before any response). Closing first is the caller's job, so the server's timeout must
outlast the pools' and load balancers' idle timeouts (commonly 60 s), as nginx's 75 s does.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from fastapi import FastAPI

from streamer import __version__
from streamer.config.settings import Settings
from streamer.errors import ConfigError
from streamer.observability.tracing import provider_from_env
from streamer.serve.app import create_app
from streamer.serve.runtime import ServeOptions, build_runtime
from streamer.service import heap

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; ``ConfigError`` when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: FastAPI, options: ServeOptions) -> uvicorn.Config:
    """How uvicorn runs the API: our logging, no access log, the keep-alive and grace periods."""
    return uvicorn.Config(
        app,
        log_config=None,  # our structured logging (observability.logs) stays in charge
        access_log=False,
        timeout_graceful_shutdown=int(options.graceful_timeout_s),
        timeout_keep_alive=options.keep_alive_s,
        server_header=False,
        lifespan="on",
    )


def serve(settings: Settings, options: ServeOptions) -> None:
    """Build the runtime from settings and serve until SIGTERM/SIGINT."""
    runtime = build_runtime(settings, options)
    provider = provider_from_env()
    tracer = provider.get_tracer("streamer.serve", __version__) if provider else None
    app = create_app(runtime, tracer)
    sock = bind(options.host, options.port)
    config = uvicorn_config(app, options)
    log.info(
        "serving %s@%s on %s:%d (batch window %s ms, max batch %d, publish %s, api keys %d)",
        runtime.kernel.stamp.name,
        runtime.kernel.stamp.version,
        options.host,
        sock.getsockname()[1],
        options.batch_wait_ms,
        options.max_batch,
        options.publish,
        len(options.api_keys),
    )
    heap.settle()  # as the stream does: no full collection walks the start-up heap again
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        if provider is not None:
            provider.shutdown()
