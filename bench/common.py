"""What the benchmark's hand-written contenders share: arguments, clients, a stop flag."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable

from confluent_kafka import Consumer, Producer


def parse_args(*extra: str) -> argparse.Namespace:
    """--bootstrap, --input, --output, --group, and the named ``extra`` options, all required."""
    parser = argparse.ArgumentParser()
    for name in ("--bootstrap", "--input", "--output", "--group", *extra):
        parser.add_argument(name, required=True)
    return parser.parse_args()


def clients(args: argparse.Namespace) -> tuple[Consumer, Producer]:
    """A subscribed consumer and a producer configured like streamer's defaults."""
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        }
    )
    consumer.subscribe([args.input])
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "linger.ms": 5,
            "compression.type": "lz4",
            "enable.idempotence": True,
        }
    )
    return consumer, producer


def stop_on_sigterm() -> Callable[[], bool]:
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
    return lambda: bool(stopped)


def produce(
    producer: Producer, topic: str, value: bytes | None, key: bytes | str | None, **kw: object
) -> None:
    """Produce, serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key, **kw)  # type: ignore[arg-type]
            return
        except BufferError:
            producer.poll(0.05)
