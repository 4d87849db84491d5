"""``streamer run``: build the pipeline from settings, check dependencies, run until told to stop.

Start-up fails fast with one line naming the problem and the setting to change:
``ConfigError``/``ModelError`` (exit 2) for settings and models, ``DependencyError``
(exit 3) for an unreachable broker, a missing topic or an unreachable schema registry. An
unreachable Redis is not fatal: scoring starts degraded and recovers by itself.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from redis import Redis

from streamer import __version__
from streamer.codec.schemas import load_schema, scored_schema, transaction_schema
from streamer.codec.wire import SchemaRegistry, make_decoder, make_encoder
from streamer.config.settings import Settings, redact_url
from streamer.errors import ConfigError, DependencyError
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import FeatureCache, make_redis_client, reachable
from streamer.kafka.config import admin_config, consumer_config, producer_config
from streamer.kafka.loop import Pipeline
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import Publisher
from streamer.kafka.transactions import Transactions
from streamer.model.registry import LoadedModel, load_model
from streamer.model.scorer import Scorer
from streamer.observability.health import OpsServer, Probes
from streamer.observability.metrics import Sources, StreamerCollector, Telemetry, registry_for
from streamer.observability.tracing import provider_from_env
from streamer.scoring.records import ModelStamp

log = logging.getLogger(__name__)


def schema_registry(settings: Settings) -> SchemaRegistry | None:
    if not settings.schema_registry_url:
        return None
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client: SchemaRegistry = SchemaRegistryClient(
        {"url": settings.schema_registry_url, **settings.schema_registry_properties}
    )
    return client


def check_topics(settings: Settings, timeout: float = 10.0) -> None:
    """The broker answers and the input, output and dead-letter topics exist."""
    admin = AdminClient(admin_config(settings))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise DependencyError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers} within {timeout:.0f}s "
            f"({exc.args[0].str() if exc.args else exc}); check STREAMER_KAFKA_BOOTSTRAP_SERVERS "
            "and the security settings in STREAMER_KAFKA_PROPERTIES"
        ) from None
    for setting, topic in (
        ("STREAMER_INPUT_TOPIC", settings.input_topic),
        ("STREAMER_OUTPUT_TOPIC", settings.output_topic),
        ("STREAMER_DLQ_TOPIC", settings.dead_letter_topic),
    ):
        if topic not in metadata.topics:
            raise DependencyError(
                f"topic {topic!r} does not exist on {settings.kafka_bootstrap_servers}; "
                f"create it or change {setting}"
            )


def check_schema_registry(settings: Settings, registry: SchemaRegistry | None) -> None:
    """With the confluent framing, the schema registry answers before we consume anything."""
    if registry is None:
        return
    try:
        registry.get_subjects()  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - any failure to answer is "unavailable"
        raise DependencyError(
            f"cannot reach the schema registry at {redact_url(settings.schema_registry_url)} "
            f"({type(exc).__name__}); check STREAMER_SCHEMA_REGISTRY_URL"
        ) from None


@dataclass
class Service:
    """A built pipeline and the clients it owns."""

    pipeline: Pipeline
    model: LoadedModel
    cache: FeatureCache
    registry: CollectorRegistry
    tracer_provider: TracerProvider | None
    schema_registry: SchemaRegistry | None


def build(
    settings: Settings,
    *,
    model: LoadedModel | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Service:
    """Every collaborator of the pipeline, from settings. Makes no network call."""
    model = model or load_model(settings.model, settings.models_dir)
    meta = model.metadata
    telemetry = Telemetry(
        reference_edges=meta.reference_scores.bin_edges,
        reference_counts=meta.reference_scores.counts,
    )
    registry = schema_registry(settings)
    writer = load_schema(settings.input_writer_schema) if settings.input_writer_schema else None
    decoder = make_decoder(
        settings.input_format,
        reader_schema=transaction_schema(),
        writer_schema=writer,
        registry=registry,
        max_bytes=settings.max_message_bytes,
    )
    encoder = make_encoder(
        settings.output_format,
        schema=scored_schema(),
        registry=registry,
        subject=f"{settings.output_topic}-value",
    )
    cache = FeatureCache(
        _redis_client(settings),
        prefix=settings.redis_key_prefix,
        card_defaults=model.card_defaults,
        merchant_defaults=model.merchant_defaults,
        breaker=CircuitBreaker(settings.redis_breaker_failures, settings.redis_breaker_cooldown_s),
    )
    tracker = OffsetTracker()
    try:
        producer = Producer(producer_config(settings))
        consumer = Consumer(consumer_config(settings) | {"logger": logging.getLogger("librdkafka")})
    except KafkaException as exc:
        raise ConfigError(
            f"librdkafka refused the Kafka settings: {exc.args[0].str() if exc.args else exc}; "
            "check STREAMER_KAFKA_PROPERTIES / STREAMER_CONSUMER_PROPERTIES / "
            "STREAMER_PRODUCER_PROPERTIES"
        ) from None
    pipeline = Pipeline(
        consumer=consumer,
        publisher=Publisher(producer, tracker),
        tracker=tracker,
        decoder=decoder,
        encoder=encoder,
        cache=cache,
        scorer=Scorer(model, intra_op_threads=settings.onnx_threads),
        model=ModelStamp(
            name=meta.name,
            version=meta.version,
            review_threshold=meta.thresholds.review,
            decline_threshold=meta.thresholds.decline,
        ),
        feature_names=meta.feature_names,
        input_topic=settings.input_topic,
        output_topic=settings.output_topic,
        dead_letter_topic=settings.dead_letter_topic,
        group_id=settings.group_id,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_in_flight=settings.max_in_flight,
        drain_timeout_s=settings.drain_timeout_s,
        telemetry=telemetry,
        tracer=tracer_provider.get_tracer("streamer", __version__) if tracer_provider else None,
        transactions=Transactions(producer) if settings.exactly_once else None,
    )
    publisher = pipeline.publisher
    sources = Sources(
        consumed=lambda: pipeline.stats.consumed,
        lookups=lambda: dict(cache.stats.lookups),
        redis_errors=lambda: cache.stats.errors,
        breaker_state=lambda: cache.breaker.state,
        in_flight=lambda: tracker.pending,
        delivery_failures=lambda: publisher.failed,
        model=(meta.name, meta.version),
    )
    metrics = registry_for(StreamerCollector(telemetry, sources))
    return Service(pipeline, model, cache, metrics, tracer_provider, registry)


def probes(service: Service, settings: Settings, stale_after_s: float) -> Probes:
    stats = service.pipeline.stats
    probe_client = _redis_client(settings)  # its own: the loop's client stays on one thread
    return Probes(
        heartbeat=lambda: stats.last_heartbeat,
        subscribed=lambda: stats.subscribed,
        assigned=lambda: len(stats.assigned),
        model_present=service.model.path.exists,
        redis_reachable=lambda: reachable(probe_client),
        breaker_state=lambda: service.cache.breaker.state,
        stale_after_s=stale_after_s,
    )


def _redis_client(settings: Settings) -> Redis:
    return make_redis_client(
        settings.redis_url.get_secret_value(),
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        timeout_ms=settings.redis_timeout_ms,
        ssl_ca_certs=str(settings.redis_ssl_ca_certs) if settings.redis_ssl_ca_certs else None,
    )


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


def run(settings: Settings, stop: StopFlag | None = None) -> dict[str, Any]:
    """Check dependencies, then score until stopped. Returns the loop's final counters."""
    stop = stop or StopFlag()
    stop.install()  # first: a SIGTERM during start-up is a clean stop, not a kill
    service = build(settings, tracer_provider=provider_from_env(max_links=settings.max_batch_size))
    check_topics(settings)
    check_schema_registry(settings, service.schema_registry)
    if service.pipeline.transactions is not None:
        service.pipeline.transactions.init()
    stale_after = max(30.0, settings.max_wait_ms / 1000.0 * 10)
    ops = OpsServer(settings.metrics_port, service.registry, probes(service, settings, stale_after))
    if not service.cache.ping():
        log.warning(
            "Redis at %s is not reachable: scoring with default features (DEGRADED) until it is",
            redact_url(settings.redis_url.get_secret_value()),
        )
    log.info("settings: %s", json.dumps(settings.redacted(), sort_keys=True))
    meta = service.model.metadata
    log.info(
        "scoring %s -> %s with model %s@%s (group %s, %s)",
        settings.input_topic,
        settings.output_topic,
        meta.name,
        meta.version,
        settings.group_id,
        settings.processing_guarantee,
    )
    try:
        service.pipeline.run(stop)
    finally:
        ops.close()
        if service.tracer_provider is not None:
            service.tracer_provider.shutdown()  # flushes spans still queued for export
    stats = service.pipeline.stats
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
