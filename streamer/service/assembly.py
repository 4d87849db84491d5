"""Building the stream from settings: every collaborator of the loop, and nothing else.

``build`` makes no network call (clients connect on first use), so a bad setting fails
here with a ``ConfigError`` before anything is touched. The pieces other deployments
share (the feature cache, the kernel) are built by the functions they call too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from streamer import __version__
from streamer.clients import Clients
from streamer.codec.schemas import load_schema, scored_schema, transaction_schema
from streamer.codec.wire import make_decoder, make_encoder
from streamer.config.settings import Settings
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import FeatureCache
from streamer.kafka.commit import AtLeastOnce, CommitStrategy, ExactlyOnce
from streamer.kafka.loop import LoopStats, StatsObserver, StreamLoop, Topics
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import Publisher
from streamer.kafka.transactions import Transactions
from streamer.model.registry import LoadedModel, load_model
from streamer.model.scorer import Scorer
from streamer.observability.metrics import Sources, StreamerCollector, Telemetry, registry_for
from streamer.observability.observer import Observer, Observers
from streamer.observability.progress import ProgressLog
from streamer.observability.tracing import TracingObserver
from streamer.scoring.kernel import ScoringKernel


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

    @property
    def model(self) -> LoadedModel:
        return self.kernel.model


def feature_cache(
    clients: Clients, model: LoadedModel, *, timeout_ms: float | None = None
) -> FeatureCache:
    """The Redis feature cache with ``model``'s defaults, as every deployment uses it."""
    redis = clients.settings.redis
    return FeatureCache(
        clients.redis(timeout_ms=timeout_ms),
        prefix=redis.key_prefix,
        card_defaults=model.card_defaults,
        merchant_defaults=model.merchant_defaults,
        breaker=CircuitBreaker(redis.breaker_failures, redis.breaker_cooldown_s),
    )


def load(settings: Settings) -> LoadedModel:
    """The model the settings name, verified."""
    return load_model(settings.models.spec, settings.models.models_dir)


def build(
    settings: Settings,
    *,
    model: LoadedModel | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Service:
    """Every collaborator of the stream, from settings. Makes no network call."""
    clients = Clients(settings)
    model = model or load(settings)
    meta = model.metadata
    telemetry = Telemetry(
        reference_edges=meta.reference_scores.bin_edges,
        reference_counts=meta.reference_scores.counts,
    )
    topics = Topics(
        settings.input_topic, settings.output_topic, settings.dead_letter_topic, settings.group_id
    )
    stats = LoopStats()
    progress = ProgressLog(stats, telemetry.latency, settings.progress_interval_s)
    observers: list[Observer] = [telemetry, StatsObserver(stats), progress]
    if tracer_provider is not None:
        tracer = tracer_provider.get_tracer("streamer", __version__)
        observers.append(TracingObserver(tracer, topics.input, topics.output, topics.group_id))
    observer = Observers(observers)
    registry = clients.schema_registry()
    cache = feature_cache(clients, model)
    kernel = ScoringKernel(
        model,
        cache,
        scorer=Scorer(model, intra_op_threads=settings.onnx_threads),
        observer=observer,
    )
    producer, consumer = clients.producer(), clients.consumer()
    tracker = OffsetTracker()
    publisher = Publisher(producer, tracker, observer)
    transactions = Transactions(producer) if settings.exactly_once else None
    commits: CommitStrategy = (
        ExactlyOnce(consumer, publisher, transactions, drain_timeout_s=settings.drain_timeout_s)
        if transactions is not None
        else AtLeastOnce(
            consumer,
            publisher,
            tracker,
            max_in_flight=settings.max_in_flight,
            drain_timeout_s=settings.drain_timeout_s,
        )
    )
    writer = load_schema(settings.input_writer_schema) if settings.input_writer_schema else None
    loop = StreamLoop(
        consumer=consumer,
        publisher=publisher,
        decoder=make_decoder(
            settings.input_format,
            reader_schema=transaction_schema(),
            writer_schema=writer,
            registry=registry,
            max_bytes=settings.max_message_bytes,
        ),
        encoder=make_encoder(
            settings.output_format,
            schema=scored_schema(),
            registry=registry,
            subject=f"{settings.output_topic}-value",
        ),
        kernel=kernel,
        commits=commits,
        topics=topics,
        observer=observer,
        stats=stats,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
    )
    sources = Sources(
        consumed=lambda: stats.consumed,
        lookups=lambda: dict(cache.stats.lookups),
        redis_errors=lambda: cache.stats.errors,
        breaker_state=lambda: cache.breaker.state,
        in_flight=lambda: tracker.pending,
        delivery_failures=lambda: publisher.failed,
        model=lambda: (kernel.stamp.name, kernel.stamp.version),
    )
    metrics = registry_for(StreamerCollector(telemetry, sources))
    return Service(
        loop, kernel, cache, telemetry, metrics, clients, tracer_provider, registry, transactions
    )
