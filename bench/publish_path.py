"""Micro-benchmark of the stream's output path: CPU µs per event of a batch's trace headers
(``trace_headers_of``), its encoding (``Encoder.encode_columns``) and its queueing
(``Publisher.send_many``, which first serves the previous batch's delivery reports and
settles it, as in a drain).

Run: source .dev/env; PYTHONPATH=. .venv/bin/python bench/publish_path.py [--batch 430]
     [--batches 150]

Against the broker of ``STREAMER_KAFKA_BOOTSTRAP_SERVERS`` (``make dev-up``). The inputs
are consumed from a fresh topic, each with a ``traceparent`` header (as ``make bench``'s
backlog), so reading their headers costs what it costs on consumed records; the outputs go
to another fresh topic through the stream's producer (``clients.producer`` with
``STREAM_PRODUCER``). Between batches the loop sleeps as long as scoring a batch takes
(4 ms), so the previous batch is acknowledged by the time the next is queued. Figures are
``time.thread_time`` (this thread's CPU: librdkafka's threads and the broker are not in
them) per event, the median over batches. ``PYTHONPATH`` picks the tree measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import numpy as np
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamer.clients import Clients
from streamer.codec.schemas import scored_schema, transaction_schema
from streamer.codec.wire import make_encoder
from streamer.config.loader import load_settings
from streamer.dev.synth import generate_events, make_population
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import STREAM_PRODUCER, Publisher
from streamer.observability.tracing import trace_headers_of
from streamer.scoring.records import ModelStamp, scored_columns

TRACEPARENT = b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"


def consumed(bootstrap: str, topic: str, count: int) -> list[Message]:
    """``count`` inputs written to ``topic`` (3 partitions, made here) and consumed back
    (headers not yet read)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    encoder = make_encoder("single-object", schema=transaction_schema())
    events = generate_events(make_population(7, 50_000), count, seed=3, start_ms=0)
    for i, event in enumerate(events):
        while True:
            try:
                producer.produce(
                    topic, encoder.encode(event), event["card_id"], i % 3,
                    headers=[("traceparent", TRACEPARENT)],
                )  # fmt: skip
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + 120
    while len(out) < count and time.monotonic() < deadline:
        out += [m for m in consumer.consume(1000, 1.0) if m.error() is None]
    consumer.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=430)
    parser.add_argument("--batches", type=int, default=150)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    os.environ.setdefault("STREAMER_LOG_LEVEL", "WARNING")
    settings = load_settings()
    bootstrap = os.environ["STREAMER_KAFKA_BOOTSTRAP_SERVERS"]
    messages = consumed(bootstrap, f"publish-path-{tag}-in", args.batch * args.batches)
    scored = generate_events(make_population(7, 50_000), len(messages), seed=3, start_ms=0)
    tracker = OffsetTracker()
    publisher = Publisher(Clients(settings).producer(**STREAM_PRODUCER), tracker)
    encoder = make_encoder("single-object", schema=scored_schema())
    encoder.prepare()
    stamp = ModelStamp("fraud-gbt", "3", 0.5, 0.9)
    output = f"publish-path-{tag}-out"
    spent: dict[str, list[float]] = {"trace_headers_of": [], "encode_columns": [], "send_many": []}
    clock = time.thread_time
    for start in range(0, len(messages), args.batch):
        batch = messages[start : start + args.batch]
        events = scored[start : start + args.batch]  # what was scored: any events do
        now = time.time_ns() // 1_000_000
        positions = [((m.topic() or "", m.partition() or 0), m.offset() or 0) for m in batch]
        for tp in {tp for tp, _ in positions}:
            tracker.register(tp, [offset for at, offset in positions if at == tp])
        columns = scored_columns(
            events, scores=np.random.default_rng(start).random(len(batch)),
            decisions=np.zeros(len(batch), np.int8), statuses=np.zeros(len(batch), np.int8),
            partitions=[tp[1] for tp, _ in positions], offsets=[o for _, o in positions],
            model=stamp, received_ms=now, scored_ms=now, publish_ms=now,
        )  # fmt: skip
        t0 = clock()
        headers = trace_headers_of(batch)
        t1 = clock()
        values = encoder.encode_columns(columns, len(batch))
        t2 = clock()
        publisher.send_many(
            output, columns["card_id"], values, positions, headers, [now] * len(batch), batch
        )
        t3 = clock()
        for name, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            spent[name].append(seconds / len(batch) * 1e6)
        time.sleep(0.004)  # scoring the next batch: this one is acknowledged meanwhile
    left = publisher.flush(30)
    assert left == 0, "every output acknowledged"
    assert tracker.pending == 0, "every input acknowledged"
    for future in (
        AdminClient({"bootstrap.servers": bootstrap})
        .delete_topics([f"publish-path-{tag}-in", output])
        .values()
    ):
        future.exception(30)
    figures = {name: statistics.median(values[5:]) for name, values in spent.items()}
    print(
        f"{len(messages):,} events in batches of {args.batch}, CPU µs per event (median): "
        + ", ".join(f"{name} {us:.3f}" for name, us in figures.items())
        + f"; total {sum(figures.values()):.3f}"
    )


if __name__ == "__main__":
    main()
