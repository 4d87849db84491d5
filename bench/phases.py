"""The benchmark's two kinds of phase: drain a backlog, and send at a fixed rate.

Sending stamps each event's ``event_time`` as it is produced; collecting reads the
contender's outputs (their broker append time, and for the fixed-rate phases the times
the scored record carries) until the expected number arrived.
"""

from __future__ import annotations

import io
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro import schemaless_reader

from streamer.codec.schemas import known_schemas, transaction_schema, without_logical_types
from streamer.codec.wire import make_encoder
from streamer.dev.generator import traceparent
from streamer.features.velocity_store import velocity_key

Procs = list[subprocess.Popen[bytes]]
# (append ms, event ms, received ms, published ms); the last three 0 when not decoded
Row = tuple[int, int, int, int]


def topics(admin: AdminClient, names: list[str], partitions: int, log_append: bool = False) -> None:
    config = {"message.timestamp.type": "LogAppendTime"} if log_append else {}
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1, config=config) for n in names]
    )
    for future in futures.values():
        future.result(timeout=30)


def send(
    producer: Producer,
    topic: str,
    events: list[dict[str, Any]],
    rate: float = 0.0,
    sampled: float = 1.0,
) -> None:
    """Produce ``events`` (as fast as possible, or at ``rate`` per second)."""
    encoder = make_encoder("single-object", schema=transaction_schema())
    chooser = random.Random(42)
    started = time.monotonic()
    for i, event in enumerate(events):
        if rate:
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        stamped = {**event, "event_time": time.time_ns() // 1_000_000}
        while True:
            try:
                producer.produce(
                    topic,
                    encoder.encode(stamped),
                    event["card_id"],
                    headers=[("traceparent", traceparent(chooser.random() < sampled))],
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)


class Collector:
    """Reads a contender's output topic; decodes the times only when asked (the fixed-rate
    phases), and only after the phase: decoding while it runs takes CPU from the contender."""

    def __init__(self, consumer: Consumer, schema_dirs: list[Path]) -> None:
        self._consumer = consumer
        self._schemas: dict[bytes, Any] = {}
        for directory in schema_dirs:
            for fp, schema in known_schemas(directory).items():
                self._schemas[fp] = without_logical_types(schema)

    def collect(
        self,
        expected: int,
        timeout: float,
        procs: Procs,
        *,
        times: bool,
        on_first: Callable[[], None] | None = None,
    ) -> list[Row]:
        raw: list[tuple[int, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while (
            len(raw) < expected
            and time.monotonic() < deadline
            and all(p.poll() is None for p in procs)
        ):
            for msg in self._consumer.consume(2000, 0.2):
                if msg.error():
                    continue
                if not raw and on_first is not None:
                    on_first()
                raw.append((msg.timestamp()[1], msg.value() if times else None))
        # Decoded once the phase is over: decoding while it runs takes CPU from the contender.
        return [(appended, *self._times(value, times)) for appended, value in raw]

    def _times(self, value: bytes | None, times: bool) -> tuple[int, int, int]:
        if not times or not value or value[2:10] not in self._schemas:
            return 0, 0, 0
        record = schemaless_reader(io.BytesIO(value[10:]), self._schemas[value[2:10]], None)
        # A passthrough's outputs are input events: they carry the event time only.
        event = int(record["event_time"])
        return event, int(record.get("received_time", 0)), int(record.get("scored_time", 0))


def forget_velocity(client: Any) -> int:
    """Delete every card's velocity state: a state an earlier run (or contender) left holds
    positions above a fresh topic's offsets, and its events would all be replays (no state
    written), not the live path. One ``UNLINK`` per key, pipelined: a Redis Cluster routes
    each to its slot."""
    keys = list(client.scan_iter(match=velocity_key("", "*"), count=10_000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    pipe.execute()
    return len(keys)
