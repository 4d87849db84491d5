"""Prometheus export: ``Telemetry`` and live ``Sources`` as metric families at scrape time.

Every metric is listed in the README's Operations section.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import GCCollector, ProcessCollector
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector

from streamer.observability.metrics import BatchHistogram, Telemetry


@dataclass
class Sources:
    """Live objects read at scrape time (callables so nothing holds stale values)."""

    consumed: Callable[[], int]
    lookups: Callable[[], dict[tuple[str, str], int]]  # (entity, result) -> count
    redis_errors: Callable[[], int]
    breaker_state: Callable[[], str]
    in_flight: Callable[[], int]
    delivery_failures: Callable[[], int]
    outputs_refused: Callable[[], int]  # permanently refused by the broker (too large, …)
    rewinds: Callable[[], int]  # partitions rewound to reprocess
    velocity: Callable[[], dict[tuple[str, str], int]] = dict  # CacheStats.velocity


class StreamerCollector(Collector):
    """Turns ``Telemetry`` and ``Sources`` into Prometheus metric families."""

    def __init__(self, telemetry: Telemetry, sources: Sources) -> None:
        self.telemetry = telemetry
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._states()
        yield from self._distributions()

    def _counters(self) -> Iterator[Metric]:
        t, s = self.telemetry, self.sources
        yield _counter("streamer_events_consumed", "Input messages consumed.", [((), s.consumed())])
        yield _counter(
            "streamer_events_scored",
            "Events scored and handed to the producer, by decision and model version.",
            [((d, v), n) for (d, v), n in sorted(t.decisions.items())],
            ["decision", "model_version"],
        )
        yield _counter(
            "streamer_decision_reasons",
            "Reason codes given with the scoring model's decisions (up to three per event), "
            "by model version, decision and code (docs/reasons.md).",
            [((v, d, r), n) for (v, d, r), n in sorted(t.reasons.items())],
            ["model_version", "decision", "reason"],
        )
        yield _counter(
            "streamer_events_dead_lettered",
            "Messages sent to the dead-letter topic.",
            [((stage, reason), n) for (stage, reason), n in sorted(t.dead_letters.items())],
            ["stage", "reason"],
        )
        yield _counter(
            "streamer_feature_status",
            "Scored events by feature completeness.",
            [((k,), n) for k, n in sorted(t.feature_status.items())],
            ["status"],
        )
        yield from self._delivery_counters()
        yield _counter(
            "streamer_feature_lookups",
            "Feature lookups of each batch's unique entities: hit, miss (defaults) or "
            "degraded (cache unavailable).",
            sorted(s.lookups().items()),
            ["entity", "result"],
        )
        yield _counter(
            "streamer_redis_errors", "Failed feature cache round trips.", [((), s.redis_errors())]
        )
        yield from _velocity(s.velocity())

    def _delivery_counters(self) -> Iterator[Metric]:
        """What became of the outputs: failed, refused, rewound, transactions."""
        t, s = self.telemetry, self.sources
        yield _counter(
            "streamer_delivery_failures",
            "Outputs the broker did not acknowledge (their inputs are reprocessed).",
            [((), s.delivery_failures())],
        )
        yield _counter(
            "streamer_outputs_refused",
            "Outputs the broker refused for good (too large, invalid): the input is "
            "dead-lettered, a dead letter is re-sent cut down.",
            [((), s.outputs_refused())],
        )
        yield _counter(
            "streamer_partition_rewinds",
            "Partitions rewound to reprocess undelivered outputs or an aborted batch.",
            [((), s.rewinds())],
        )
        yield _counter(
            "streamer_transactions",
            "Exactly-once: Kafka transactions committed or aborted, by outcome.",
            [((o,), n) for o, n in sorted(t.transactions.items())],
            ["outcome"],
        )

    def _states(self) -> Iterator[Metric]:
        t, s = self.telemetry, self.sources
        state = StateSetMetricFamily(
            "streamer_redis_breaker_state", "Feature cache circuit breaker."
        )
        current = s.breaker_state()
        state.add_metric([], {k: k == current for k in ("closed", "open", "half-open")})
        yield state
        yield _gauge(
            "streamer_events_in_flight",
            "Consumed messages whose output is not acknowledged yet.",
            [((), s.in_flight())],
        )
        yield _gauge(
            "streamer_consumer_lag",
            "Messages behind the partition's end (high watermark).",
            [((tp, str(p)), lag) for (tp, p), lag in sorted(t.current_lag.items())],
            ["topic", "partition"],
        )

    def _distributions(self) -> Iterator[Metric]:
        t = self.telemetry
        yield _histogram(
            "streamer_end_to_end_latency_seconds",
            "Event time to broker acknowledgement of the scored event.",
            t.latency,
        )
        yield _histogram("streamer_batch_size", "Messages per micro-batch.", t.batch_size)
        yield _histogram(
            "streamer_transaction_commit_seconds",
            "Exactly-once: time to commit a transaction (offsets sent, outputs flushed, "
            "commit acknowledged); the loop waits for it.",
            t.commit_seconds,
        )
        yield _histogram(
            "streamer_transaction_batches",
            "Exactly-once: micro-batches per committed transaction.",
            t.transaction_batches,
        )
        stages = HistogramMetricFamily(
            "streamer_stage_duration_seconds", "Time per batch in each stage.", labels=["stage"]
        )
        for name, hist in t.stages.items():
            buckets, total = hist.snapshot()
            stages.add_metric([name], buckets, total)
        yield stages


def _velocity(counts: dict[tuple[str, str], int]) -> Iterator[Metric]:
    """The velocity state's counters (``FeatureCache.stats.velocity``)."""

    def of(what: str) -> list[tuple[tuple[str, ...], float]]:
        return [((key,), n) for (kind, key), n in sorted(counts.items()) if kind == what]

    yield _counter(
        "streamer_velocity_events",
        "Events folded into the velocity state, by outcome: new, late (over an hour behind "
        "the card's newest), duplicate (transaction id already recorded) or replay (position "
        "already applied: a rewind, restart or second instance).",
        of("event"),
        ["outcome"],
    )
    yield _counter(
        "streamer_velocity_writes",
        "Card states written after a batch: written, stale (a newer state was stored) or "
        "failed (Redis error: the batch's events are missing from the state).",
        of("write"),
        ["result"],
    )
    state = dict(of("state"))
    yield _counter(
        "streamer_velocity_state_keys_written",
        "Card states written.",
        [((), state.get(("keys",), 0))],
    )
    yield _counter(
        "streamer_velocity_state_bytes_written",
        "Bytes of card states written (divided by keys written: the bytes per card).",
        [((), state.get(("bytes",), 0))],
    )


def _counter(
    name: str,
    doc: str,
    samples: Iterable[tuple[tuple[str, ...], float]],
    labels: Sequence[str] = (),
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for values, n in samples:
        family.add_metric(list(values), n)
    return family


def _gauge(
    name: str,
    doc: str,
    samples: Iterable[tuple[tuple[str, ...], float]],
    labels: Sequence[str] = (),
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for values, n in samples:
        family.add_metric(list(values), n)
    return family


def _histogram(name: str, doc: str, hist: BatchHistogram) -> HistogramMetricFamily:
    buckets, total = hist.snapshot()
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


def registry_for(*collectors: Collector) -> CollectorRegistry:
    """A registry of our own (no process-global default registry), with the process
    (CPU, memory, file descriptors) and garbage-collector metrics SREs expect."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        registry.register(collector)
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
