"""``streamer run``'s start-up: build the stream around its consumer and check what it depends on.

Everything here runs while the consumer joins its group (librdkafka's threads), the
topics are checked and the model's last check (its explainer against the ONNX model,
``registry.open_model``) runs, each on another thread (``service.runner``).

Start-up fails fast with one line naming the problem and the setting to change:
``ConfigError``/``ModelError`` (exit 2) for settings and models, ``DependencyError``
(exit 3) for an unreachable broker, a missing topic or an unreachable schema registry. An
unreachable Redis is not fatal: scoring starts degraded and recovers by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Producer

from streamer.clients import Clients
from streamer.config.redaction import redact_url
from streamer.config.settings import Settings
from streamer.errors import ConfigError, DependencyError
from streamer.features.redis_client import RedisCredentialsError, check_redis, reachable
from streamer.kafka.membership import Membership
from streamer.model.metadata import LoadedModel
from streamer.observability.health import OpsServer, Probes
from streamer.observability.tracing import provider_from_env
from streamer.service.assembly import Service, build
from streamer.service.checks import check_output_schema, check_schema_registry

log = logging.getLogger(__name__)


def start(
    settings: Settings,
    model: LoadedModel,
    clients: Clients,
    membership: Membership,
    producer: Producer,
    topics_checked: Callable[[], None],
) -> tuple[Service, OpsServer]:
    """The stream built around the joining ``membership``'s consumer and ``producer`` (made
    early too: ready by the first output), checked (the topics by ``topics_checked``, which
    raises what the check on its thread raised), its metrics port open; on failure nothing
    is left open (the consumer is closed, the producer holds nothing)."""
    try:
        service = build(
            settings,
            model=model,
            tracer_provider=provider_from_env(max_links=settings.max_batch_size),
            clients=clients,
            membership=membership,
            producer=producer,
        )
        topics_checked()
        check_schema_registry(settings, service.schema_registry)
        check_output_schema(service.loop.encoder)
        ops = ops_server(settings, service)
    except BaseException:
        membership.abandon()
        raise
    service.loop.subscribe()  # follows the membership: rebalances reach the loop
    try:
        if service.transactions is not None:
            service.transactions.init()
        check_feature_cache(settings, service)
        service.kernel.warm()
    except BaseException:
        abandon(membership, ops)
        raise
    return service, ops


def abandon(membership: Membership, ops: OpsServer) -> None:
    """Close what ``start`` opened: the consumer (a dynamic member leaves the group; a static
    one is dropped after its session timeout, as after any exit), the port."""
    membership.abandon()
    ops.close()


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
