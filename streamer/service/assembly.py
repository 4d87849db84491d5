"""Building the stream from settings: every collaborator of the loop, and nothing else.

``build`` makes no network call (clients connect on first use), so a bad setting fails
here with a ``ConfigError`` before anything is touched. The pieces other deployments
share (the feature cache, the kernel) are built by the functions they call too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from streamer import __version__
from streamer.clients import Clients
from streamer.codec.confluent import subject_name
from streamer.codec.schemas import Schema, load_schema, scored_schema, transaction_schema
from streamer.codec.wire import SerializerOptions, WireFormat, make_decoder, make_encoder
from streamer.config.settings import Settings
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import FeatureCache, VelocityMode
from streamer.features.enrichment import OfflineVelocity
from streamer.kafka.batch import Decoder
from streamer.kafka.batching import LatencyTargetSizer
from streamer.kafka.commit import AtLeastOnce, CommitStrategy, ExactlyOnce
from streamer.kafka.config import STREAM_PRODUCER, producer_config
from streamer.kafka.loop import Encoder, LoopStats, StatsObserver, StreamLoop, Topics
from streamer.kafka.membership import Membership
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import DeadLetterTopic, Publisher
from streamer.kafka.transactions import Transactions
from streamer.model.registry import LoadedModel, load_model
from streamer.observability.collector import Sources, StreamerCollector, registry_for
from streamer.observability.drift import DriftMonitor
from streamer.observability.metrics import Telemetry
from streamer.observability.model_collector import ModelCollector
from streamer.observability.observer import Observer, Observers
from streamer.observability.progress import ProgressLog
from streamer.observability.tracing import TracingObserver
from streamer.scoring.kernel import ScoringKernel
from streamer.service.models import ModelSwitch, model_sources, scoring_kernel

if TYPE_CHECKING:  # the SDK is imported only when tracing is on (observability.tracing)
    from opentelemetry.sdk.trace import TracerProvider


@dataclass
class Service:
    """A built stream and what it owns."""

    loop: StreamLoop
    kernel: ScoringKernel
    cache: FeatureCache
    telemetry: Telemetry
    metrics: CollectorRegistry
    clients: Clients
    tracer_provider: TracerProvider | None
    schema_registry: Any | None
    transactions: Transactions | None
    models: ModelSwitch

    @property
    def model(self) -> LoadedModel:
        return self.kernel.model


def feature_cache(
    clients: Clients,
    model: LoadedModel,
    *,
    timeout_ms: float | None = None,
    velocity: VelocityMode = "off",
) -> FeatureCache:
    """The Redis feature cache with ``model``'s defaults, as every deployment uses it.

    ``velocity`` is what this deployment does with the cards' velocity state in Redis
    (when ``STREAMER_VELOCITY_STATE`` is on): the stream reads and writes it, the scoring
    API only reads it. Offline paths keep their own state in memory (``offline_source``)."""
    redis = clients.settings.redis
    settings = clients.settings
    return FeatureCache(
        clients.redis(timeout_ms=timeout_ms),
        prefix=redis.key_prefix,
        card_defaults=model.card_defaults,
        merchant_defaults=model.merchant_defaults,
        breaker=CircuitBreaker(redis.breaker_failures, redis.breaker_cooldown_s),
        budget_s=redis.budget_ms / 1000.0,
        velocity=velocity if settings.velocity_state else "off",
        velocity_ttl_s=settings.velocity_ttl_days * 86_400,
    )


def offline_source(
    clients: Clients, model: LoadedModel, *, timeout_ms: float | None = None
) -> FeatureCache | OfflineVelocity:
    """The feature source of an offline path (``score-file``, ``features build``, the
    gate): the snapshot from Redis, and velocity state folded in memory over the input
    itself (its order stands for the partition's), never the stream's state."""
    cache = feature_cache(clients, model, timeout_ms=timeout_ms)
    return OfflineVelocity(cache) if clients.settings.velocity_state else cache


def decoder(settings: Settings, registry: Any | None) -> Decoder:
    """The input decoder the settings describe (framing, writer schema, size limit)."""
    writer = load_schema(settings.input_writer_schema) if settings.input_writer_schema else None
    return make_decoder(
        settings.input_format,
        reader_schema=transaction_schema(),
        writer_schema=writer,
        registry=registry,
        max_bytes=settings.max_message_bytes,
        unknown_id_ttl_s=settings.registry.unknown_id_ttl_s,
    )


def encoder(settings: Settings, registry: Any | None) -> Encoder:
    """The ScoredEvent encoder for the output topic (subject and serializer options from
    the ``STREAMER_SCHEMA_REGISTRY_*`` settings)."""
    return topic_encoder(settings, registry, settings.output_format, settings.output_topic)


def topic_encoder(
    settings: Settings,
    registry: Any | None,
    fmt: WireFormat,
    topic: str,
    schema: Schema | None = None,
) -> Encoder:
    """An encoder of ``schema`` (default: ScoredEvent) records for ``topic`` in ``fmt``."""
    schema = schema or scored_schema()
    r = settings.registry
    return make_encoder(
        fmt,
        schema=schema,
        registry=registry,
        subject=subject_name(r.subject_strategy, topic, schema),
        options=SerializerOptions(auto_register=r.auto_register, use_latest=r.use_latest),
    )


def commit_strategy(
    settings: Settings,
    consumer: Consumer,
    publisher: Publisher,
    tracker: OffsetTracker,
    transactions: Transactions | None,
    observer: Observer | None = None,
) -> CommitStrategy:
    """Exactly-once when the settings ask for it, else at-least-once."""
    if transactions is not None:
        return ExactlyOnce(
            consumer,
            publisher,
            transactions,
            drain_timeout_s=settings.drain_timeout_s,
            max_s=settings.transaction_max_ms / 1000.0,
            max_batches=settings.transaction_max_batches,
            observer=observer,
        )
    return AtLeastOnce(
        consumer,
        publisher,
        tracker,
        max_in_flight=settings.max_in_flight,
        drain_timeout_s=settings.drain_timeout_s,
    )


def offline_kernel(clients: Clients, *, allow_degraded: bool) -> ScoringKernel:
    """The kernel of an offline path (``score-file``, ``features build``): the model the
    settings name, the snapshot from Redis and velocity state folded in memory. Redis is
    asked once first: unless ``allow_degraded``, an unreachable Redis stops the job before
    anything is written (its output would look valid and be wrong)."""
    from streamer.config.redaction import redact_url
    from streamer.errors import DependencyError
    from streamer.scoring.reasons import reason_settings

    model = load(clients.settings)
    source = offline_source(clients, model, timeout_ms=2000)
    s = clients.settings
    if not allow_degraded and not source.ping():
        where = redact_url(s.redis_url.get_secret_value())
        raise DependencyError(
            f"cannot reach Redis at {where}; check STREAMER_REDIS_URL (or --redis-url), "
            "or pass --allow-degraded to score with default features"
        )
    reasons = reason_settings(s.reasons, s.reasons_deny)
    return ScoringKernel(model, source, feature_logging=s.feature_logging, reasons=reasons)


def load(settings: Settings) -> LoadedModel:
    """The model the settings name, verified."""
    return load_model(settings.models.spec, settings.models.models_dir)


def build(
    settings: Settings,
    *,
    model: LoadedModel | None = None,
    tracer_provider: TracerProvider | None = None,
    clients: Clients | None = None,
    membership: Membership | None = None,
    producer: Producer | None = None,
) -> Service:
    """Every collaborator of the stream, from settings. Makes no network call (but for
    the group join ``membership`` may have under way: its consumer is the stream's, and
    what ``producer``, the stream's when given, does to be ready)."""
    clients = clients or Clients(settings)
    model = model or load(settings)
    telemetry = Telemetry(drift=DriftMonitor(window_s=settings.drift_window_s))
    topics = Topics(
        settings.input_topic, settings.output_topic, settings.dead_letter_topic, settings.group_id
    )
    stats = LoopStats()
    observer = _observer(settings, telemetry, stats, topics, tracer_provider)
    registry = clients.schema_registry()
    cache = feature_cache(clients, model, velocity="read-write")
    kernel, switch = scoring_kernel(settings, model, cache, observer)
    producer = producer or clients.producer(**STREAM_PRODUCER)
    consumer = membership.consumer if membership is not None else clients.consumer()
    tracker = OffsetTracker()
    publisher = Publisher(
        producer,
        tracker,
        observer,
        dead_letters=DeadLetterTopic(settings.dead_letter_topic, settings.group_id),
        max_bytes=int(producer_config(settings.kafka)["message.max.bytes"]),
        give_up_after_s=settings.dlq_give_up_s,
    )
    transactions = Transactions(producer) if settings.exactly_once else None
    commits = commit_strategy(settings, consumer, publisher, tracker, transactions, observer)
    loop = StreamLoop(
        consumer=consumer,
        publisher=publisher,
        decoder=decoder(settings, registry),
        encoder=encoder(settings, registry),
        kernel=kernel,
        commits=commits,
        topics=topics,
        observer=observer,
        stats=stats,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        redis_gate=cache.available if settings.redis_required else None,
        sizer=_sizer(settings),
        membership=membership,
    )
    sources = _sources(stats, cache, tracker, publisher, loop)
    metrics = registry_for(
        StreamerCollector(telemetry, sources),
        ModelCollector(telemetry, model_sources(kernel, switch)),
    )
    parts = (loop, kernel, cache, telemetry, metrics, clients, tracer_provider, registry)
    return Service(*parts, transactions, switch)


def _observer(
    settings: Settings,
    telemetry: Telemetry,
    stats: LoopStats,
    topics: Topics,
    tracer_provider: TracerProvider | None,
) -> Observers:
    """Metrics, the loop's counters, the progress line and, with a tracer, the spans."""
    progress = ProgressLog(stats, telemetry.latency, settings.progress_interval_s)
    observers: list[Observer] = [telemetry, StatsObserver(stats), progress]
    if tracer_provider is not None:
        tracer = tracer_provider.get_tracer("streamer", __version__)
        observers.append(TracingObserver(tracer, topics.input, topics.output, topics.group_id))
    return Observers(observers)


def _sizer(settings: Settings) -> LatencyTargetSizer | None:
    """Batches sized for ``STREAMER_LATENCY_TARGET_MS`` when it is set."""
    if not settings.latency_target_ms:
        return None
    return LatencyTargetSizer(settings.latency_target_ms, max_size=settings.max_batch_size)


def _sources(
    stats: LoopStats,
    cache: FeatureCache,
    tracker: OffsetTracker,
    publisher: Publisher,
    loop: StreamLoop,
) -> Sources:
    """What the stream's metrics read at scrape time."""
    return Sources(
        consumed=lambda: stats.consumed,
        lookups=lambda: dict(cache.stats.lookups),
        redis_errors=lambda: cache.stats.errors,
        breaker_state=lambda: cache.breaker.state,
        in_flight=lambda: tracker.pending,
        delivery_failures=lambda: publisher.failed,
        outputs_refused=lambda: publisher.refused,
        rewinds=lambda: loop.commits.rewinds,
        velocity=lambda: dict(cache.stats.velocity),
    )
