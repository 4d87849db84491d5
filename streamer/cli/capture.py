"""``streamer capture``: the first N events of a topic into an Avro container file.

What the promotion gate (``models gate --file``), ``score-file`` and offline tools replay:
a fixed sample of real traffic, taken once, that everyone can score again and get the same
events. Messages are decoded exactly as ``streamer run`` decodes its input (the
``STREAMER_INPUT_*`` and schema registry settings), so a message the stream would
dead-letter is skipped and counted, never written. The topic is read from its start in
every partition up to the end it had when the capture began (a throwaway consumer that
joins no group and commits nothing), so a capture ends by itself on a live topic. The file
is written beside its destination and renamed into place: an interrupted capture never
leaves a half-written file under the name a later command reads.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from streamer.cli.common import Bootstrap, ConfigFile, RegistryUrl, WireFormatOption, topic_command
from streamer.errors import DependencyError


@dataclass
class Progress:
    """Where a capture stands: what it wrote, skipped, and which partitions are done."""

    wanted: int
    spans: dict[int, tuple[int, int]]  # partition -> (first offset, end) when it began
    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0

    def __post_init__(self) -> None:
        self._open = {p for p, (first, end) in self.spans.items() if end > first}

    @property
    def done(self) -> bool:
        return len(self.events) >= self.wanted or not self._open

    def reached_end(self, partition: int) -> None:
        """The partition has nothing more to read (its end may be a transaction marker)."""
        self._open.discard(partition)

    def take(self, partition: int, offset: int, decoded: Any) -> None:
        """One consumed message: kept when it decoded and is within the snapshot."""
        end = self.spans.get(partition, (0, 0))[1]
        if offset >= end:  # arrived after the capture began
            self._open.discard(partition)
            return
        if len(self.events) < self.wanted:
            if isinstance(decoded, dict):
                self.events.append(decoded)
            else:
                self.skipped += 1
        if offset + 1 >= end:
            self._open.discard(partition)


def capture(
    out: Annotated[Path, typer.Option("--out", "-o", help="the Avro file to write")],
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="[default: STREAMER_INPUT_TOPIC]")
    ] = None,
    max_events: Annotated[int, typer.Option("--max-events", "-n", min=1)] = 20_000,
    timeout_s: Annotated[
        float, typer.Option("--timeout", min=1, help="give up after this many seconds")
    ] = 300.0,
    bootstrap_servers: Bootstrap = None,
    fmt: WireFormatOption = None,
    schema_registry_url: RegistryUrl = None,
    config: ConfigFile = None,
) -> None:
    """Write the first N events of a topic to an Avro file (for `models gate --file`)."""
    factory, target, registry = topic_command(
        config,
        topic,
        "input_topic",
        kafka_bootstrap_servers=bootstrap_servers,
        schema_registry_url=schema_registry_url,
        input_format=fmt,
    )
    from streamer.service.assembly import decoder

    decode = decoder(factory.settings, registry)
    consumer = factory.operator_consumer("capture", **{"enable.partition.eof": True})
    try:
        progress = Progress(max_events, _assign_from_start(consumer, target))
        _read(consumer, decode, progress, time.monotonic() + timeout_s, target)
    finally:
        consumer.close()
    _write(out, progress.events)
    typer.echo(
        f"captured {len(progress.events)} events from {target} to {out}"
        f" ({progress.skipped} undecodable skipped)",
        err=True,
    )


def _assign_from_start(consumer: Any, topic: str) -> dict[int, tuple[int, int]]:
    """Assign every partition of ``topic`` at its first offset; return (first, end) of each."""
    from confluent_kafka import TopicPartition

    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    spans: dict[int, tuple[int, int]] = {}
    for p in sorted(partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        spans[p] = (low, high)
    consumer.assign([TopicPartition(topic, p, first) for p, (first, _) in spans.items()])
    return spans


def _read(consumer: Any, decode: Any, progress: Progress, deadline: float, topic: str) -> None:
    from confluent_kafka import KafkaError

    while not progress.done:
        if time.monotonic() > deadline:
            raise DependencyError(
                f"capture of {topic} timed out with {len(progress.events)} of "
                f"{progress.wanted} events; is the broker reachable? (--timeout)"
            )
        for message in consumer.consume(500, 1.0):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    progress.reached_end(message.partition())
                continue
            decoded = decode.decode(message.value())
            progress.take(message.partition(), message.offset(), decoded)


def _write(out: Path, events: list[dict[str, Any]]) -> None:
    """An Avro container file of TransactionEvents, renamed into place when complete."""
    import fastavro

    from streamer.backfill import epoch_millis
    from streamer.codec.schemas import transaction_schema

    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        with partial.open("wb") as handle:
            fastavro.writer(handle, transaction_schema(), (epoch_millis(e) for e in events))
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
