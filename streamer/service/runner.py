"""``streamer run``: build the stream from settings, check dependencies, run until told to stop.

Start-up fails fast with one line naming the problem and the setting to change:
``ConfigError``/``ModelError`` (exit 2) for settings and models, ``DependencyError``
(exit 3) for an unreachable broker, a missing topic or an unreachable schema registry. An
unreachable Redis is not fatal: scoring starts degraded and recovers by itself.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from streamer.clients import Clients
from streamer.config.redaction import redact_url
from streamer.config.settings import Settings
from streamer.errors import ConfigError, DependencyError
from streamer.features.redis_client import RedisCredentialsError, check_redis, reachable
from streamer.observability.health import OpsServer, Probes
from streamer.observability.tracing import provider_from_env
from streamer.service import heap
from streamer.service.assembly import Service, build
from streamer.service.checks import check_output_schema, check_schema_registry, check_topics

log = logging.getLogger(__name__)


class StopFlag:
    """Set by SIGTERM/SIGINT; a second signal while draining is reported, not fatal."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def __call__(self) -> bool:
        return self._event.is_set()

    def set(self, signum: int = 0, frame: FrameType | None = None) -> None:
        if self._event.is_set():
            log.warning("already stopping: draining in-flight outputs")
        else:
            log.info("stop requested (signal %s): finishing in-flight work", signum)
        self._event.set()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.set)
        signal.signal(signal.SIGINT, self.set)


def probes(service: Service, stale_after_s: float) -> Probes:
    stats = service.loop.stats
    probe_client = service.clients.redis()  # its own: the loop's client stays on one thread

    def model_present() -> bool:
        return service.kernel.model.path.exists()  # the model scoring now, after any swap

    return Probes(
        heartbeat=lambda: stats.last_heartbeat,
        subscribed=lambda: stats.subscribed,
        assigned=lambda: len(stats.assigned),
        model_present=model_present,
        redis_reachable=lambda: reachable(probe_client),
        breaker_state=lambda: service.cache.breaker.state,
        stale_after_s=stale_after_s,
        details=service.models.readiness,
    )


def ops_server(settings: Settings, service: Service) -> OpsServer:
    """``/metrics``, ``/healthz`` and ``/readyz``; a busy port is a one-line error."""
    stale_after = max(30.0, settings.max_wait_ms / 1000.0 * 10)
    try:
        return OpsServer(
            settings.metrics_port,
            service.metrics,
            probes(service, stale_after),
            host=settings.metrics_host,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: "
            f"{exc.strerror or exc}; change STREAMER_METRICS_HOST or STREAMER_METRICS_PORT "
            "(port 0 turns the server off)"
        ) from None


def check_feature_cache(settings: Settings, service: Service) -> None:
    """Refused credentials stop start-up (exit 3); an outage does only if Redis is required,
    otherwise scoring starts degraded and recovers by itself."""
    where = redact_url(settings.redis_url.get_secret_value())
    client = service.clients.redis()
    try:
        check_redis(client)
    except RedisCredentialsError as exc:
        raise DependencyError(f"Redis at {where}: {exc}; check STREAMER_REDIS_*") from None
    except DependencyError as exc:
        if settings.redis_required:
            raise DependencyError(
                f"Redis at {where}: {exc}; STREAMER_REDIS_REQUIRED is set"
            ) from None
        log.warning(
            "Redis at %s: %s; scoring with default features (DEGRADED) until it is", where, exc
        )
    finally:
        client.close()


def run(settings: Settings, stop: StopFlag | None = None) -> dict[str, Any]:
    """Check dependencies, then score until stopped. Returns the loop's final counters."""
    stop = stop or StopFlag()
    stop.install()  # first: a SIGTERM during start-up is a clean stop, not a kill
    clients = Clients(settings)
    check_topics(clients.admin(), settings, clients.errors)  # first: fail fast, before the model
    service = build(
        settings,
        tracer_provider=provider_from_env(max_links=settings.max_batch_size),
        clients=clients,
    )
    check_schema_registry(settings, service.schema_registry)
    check_output_schema(service.loop.encoder)
    if service.transactions is not None:
        service.transactions.init()
    ops = ops_server(settings, service)
    check_feature_cache(settings, service)
    log.info("effective settings", extra={"settings": settings.redacted()})
    meta, shadow = service.model.metadata, service.kernel.shadow
    shadow_name = f"{shadow.stamp.name}@{shadow.stamp.version}" if shadow else "none"
    log.info(
        "scoring %s -> %s with model %s@%s (spec %s), shadow %s (group %s, %s)",
        settings.input_topic,
        settings.output_topic,
        meta.name,
        meta.version,
        settings.model,
        f"{shadow_name} (spec {settings.shadow_model})" if shadow else "none",
        settings.group_id,
        settings.processing_guarantee,
        extra={"model": f"{meta.name}@{meta.version}", "shadow_model": shadow_name},
    )
    service.models.start()
    heap.settle()  # after start-up: the collector never walks what it built again
    try:
        service.loop.run(stop)
    finally:
        service.models.stop()
        ops.close()
        if service.tracer_provider is not None:
            service.tracer_provider.shutdown()  # flushes spans still queued for export
    stats = service.loop.stats
    log.info(
        "stopped: %d consumed, %d scored, %d dead-lettered",
        stats.consumed,
        stats.scored,
        stats.dead_lettered,
    )
    return {
        "consumed": stats.consumed,
        "scored": stats.scored,
        "dead_lettered": stats.dead_lettered,
    }
