"""What a serving process owns, built from the one ``Settings`` the stream reads.

The kernel is built exactly as ``streamer run`` builds it (``service.load``,
``service.feature_cache``, ``ScoringKernel``), so every ``STREAMER_*`` setting (Redis URL,
TLS and AUTH, key prefix, breaker, model, ONNX threads) means the same here, and the same
event gets the same score and decision on both paths. No network call happens while
building; Redis is reached on the first batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from streamer import service
from streamer.clients import Clients
from streamer.config.settings import Settings
from streamer.features.cache import FeatureCache
from streamer.features.redis_client import reachable
from streamer.observability.collector import Sources, StreamerCollector, registry_for
from streamer.observability.drift import DriftMonitor
from streamer.observability.metrics import Telemetry
from streamer.observability.model_collector import ModelCollector
from streamer.scoring.kernel import Scored, ScoringKernel
from streamer.serve.batcher import Batcher
from streamer.serve.batching import Event
from streamer.serve.metrics import HttpMetrics
from streamer.serve.publish import AuditPublisher
from streamer.service.models import ModelSwitch, model_sources, scoring_kernel

NO_SOURCE = (-1, -1)
"""(partition, offset) of a scored record that came over HTTP, not from a topic."""


@dataclass(frozen=True)
class ServeOptions:
    """The command line's serving options (settings shared with the stream stay in Settings)."""

    host: str = "0.0.0.0"
    port: int = 8080
    batch_wait_ms: float = 0.0
    max_batch: int = 256
    max_request_events: int = 100
    max_body_bytes: int = 1_000_000
    publish: bool = False
    api_keys: frozenset[str] = field(default_factory=frozenset)
    graceful_timeout_s: float = 30.0
    keep_alive_s: int = 75


@dataclass
class Runtime:
    """The kernel and everything around it that one serving process owns."""

    settings: Settings
    options: ServeOptions
    kernel: ScoringKernel
    cache: FeatureCache
    telemetry: Telemetry
    http: HttpMetrics
    registry: CollectorRegistry
    clients: Clients
    publisher: AuditPublisher | None
    models: ModelSwitch
    batcher: Batcher = field(init=False)

    def __post_init__(self) -> None:
        self.batcher = Batcher(
            self.score, wait_ms=self.options.batch_wait_ms, max_batch=self.options.max_batch
        )

    def score(self, events: list[Event], tags: Sequence[Any]) -> Scored:
        """One kernel call for merged requests (on the event loop, from the batcher)."""
        self.telemetry.batch_size.observe_one(len(events))
        scored = self.kernel.score(events, [NO_SOURCE] * len(events))
        if self.publisher is not None:
            self.publisher.publish(scored, [tags[row] for row in scored.rows])
        return scored

    def redis_ok(self) -> bool:
        return reachable(self._probe_client)

    def model_present(self) -> bool:
        return Path(self.kernel.model.path).is_file()

    def close(self) -> None:
        self.models.stop()
        if self.publisher is not None:
            self.publisher.close(self.settings.drain_timeout_s)

    @property
    def _probe_client(self) -> Any:
        # A client of its own with a short timeout: a probe must not queue behind a batch.
        client = getattr(self, "_probe", None)
        if client is None:
            client = self._probe = self.clients.redis(timeout_ms=250)
        return client


def build_runtime(settings: Settings, options: ServeOptions) -> Runtime:
    """The serving runtime from settings; raises ``ConfigError``/``ModelError`` when unfit."""
    clients = Clients(settings)
    model = service.load(settings)
    cache = service.feature_cache(clients, model, velocity="read")
    telemetry = Telemetry(drift=DriftMonitor(window_s=settings.drift_window_s))
    kernel, switch = scoring_kernel(settings, model, cache, telemetry)
    publisher = AuditPublisher.from_settings(clients) if options.publish else None
    built: list[Runtime] = []  # the runtime owns the batcher; metrics read it once built
    sources = Sources(
        consumed=lambda: int(telemetry.batch_size.total),
        lookups=lambda: dict(cache.stats.lookups),
        redis_errors=lambda: cache.stats.errors,
        breaker_state=lambda: cache.breaker.state,
        in_flight=lambda: built[0].batcher.queued_events if built else 0,
        delivery_failures=lambda: publisher.failed if publisher else 0,
        outputs_refused=lambda: publisher.refused if publisher else 0,
        rewinds=lambda: 0,
    )
    registry = registry_for(
        StreamerCollector(telemetry, sources),
        ModelCollector(telemetry, model_sources(kernel, switch)),
    )
    http = HttpMetrics(registry)
    runtime = Runtime(
        settings, options, kernel, cache, telemetry, http, registry, clients, publisher, switch
    )
    built.append(runtime)
    return runtime
