"""``streamer produce``: synthetic TransactionEvents, as an upstream card processor would send.

Events come from the seeded population in ``synth`` (the same one ``features load
--synthetic`` writes), are stamped with the send time as event time, keyed by card id and
carry a W3C ``traceparent`` header, so every transaction starts a trace.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import Producer

from streamer.dev.synth import generate_events, make_population
from streamer.errors import DependencyError


class Encoder(Protocol):
    def encode(self, record: dict[str, Any]) -> bytes: ...


_CHUNK = 1000


def traceparent(sampled: bool = True) -> bytes:
    """A fresh W3C trace context: version 00, random trace and span ids, the sampled flag."""
    flags = b"-01" if sampled else b"-00"
    return b"00-" + os.urandom(16).hex().encode() + b"-" + os.urandom(8).hex().encode() + flags


def produce_synthetic(
    producer: Producer,
    encoder: Encoder,
    *,
    topic: str,
    count: int,
    rate: float = 0.0,
    seed: int = 7,
    n_cards: int = 5000,
    n_merchants: int = 500,
    progress: bool = False,
    event_seed: int | None = None,
    trace_sample_ratio: float = 1.0,
    flush_timeout_s: float = 60.0,
) -> int:
    """Send ``count`` events (at ``rate`` per second, or as fast as possible); returns sent.

    Raises ``DependencyError`` saying how many were not delivered when any was not.
    """
    population = make_population(seed, n_cards, n_merchants)
    started = time.monotonic()
    seed_events = event_seed if event_seed is not None else int.from_bytes(os.urandom(4), "little")
    failures: list[str] = []
    chooser = random.Random(seed_events)

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    bar = _progress(count) if progress else None
    sent = 0
    while sent < count:
        n = min(_CHUNK, count - sent)
        events = generate_events(population, n, seed=seed_events + sent, start_ms=_now_ms())
        for i, event in enumerate(events):
            if rate > 0:
                _pace(started + (sent + i) / rate)
            event["event_time"] = _now_ms()
            header = traceparent(chooser.random() < trace_sample_ratio)
            _produce(producer, topic, encoder.encode(event), event["card_id"], header, delivered)
        sent += n
        if bar is not None:
            bar[0].update(bar[1], completed=sent)
    left = producer.flush(flush_timeout_s)
    if bar is not None:
        bar[0].stop()
    if failures or left:
        reason = failures[0] if failures else f"not acknowledged within {flush_timeout_s:.0f}s"
        raise DependencyError(
            f"{len(failures) + left} of {count} events were not delivered to {topic}: {reason}"
        )
    return sent


def _pace(due: float) -> None:
    """Wait until ``due`` (monotonic seconds), when the next event of a paced run is due."""
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _produce(
    producer: Producer,
    topic: str,
    value: bytes,
    key: str,
    trace: bytes,
    delivered: Callable[[Any, Any], None],
) -> None:
    """Queue one event, serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(
                topic, value, key, on_delivery=delivered, headers=[("traceparent", trace)]
            )
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _progress(total: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("producing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    )
    task = bar.add_task("produce", total=total)
    bar.start()
    return bar, task


def send_synthetic(
    *, bootstrap_servers: str, topic: str, count: int, fmt: str = "single-object", **options: Any
) -> int:
    """``produce_synthetic`` on a plain local producer (demo, tests, benchmarks)."""
    from streamer.codec.schemas import transaction_schema
    from streamer.codec.wire import make_encoder

    producer = Producer(
        {"bootstrap.servers": bootstrap_servers, "linger.ms": 10, "enable.idempotence": True}
    )
    encoder = make_encoder(fmt, schema=transaction_schema())  # type: ignore[arg-type]
    return produce_synthetic(producer, encoder, topic=topic, count=count, **options)
