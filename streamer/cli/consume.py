"""``streamer consume``: tail a topic decoded, one JSON object per line."""

from __future__ import annotations

import sys
import uuid

import orjson
from confluent_kafka import Consumer

from streamer.codec.schemas import load_schema, scored_schema, transaction_schema
from streamer.codec.wire import WireFormat, make_decoder
from streamer.config.settings import client_properties
from streamer.errors import Rejection


def tail(
    *,
    topic: str,
    bootstrap_servers: str,
    fmt: WireFormat,
    schema: str = "",
    schema_registry_url: str = "",
    count: int = 0,
    from_beginning: bool = False,
) -> int:
    """Print decoded records (and undecodable ones with their reason); returns how many."""
    if schema in ("", "scored_event"):
        reader = scored_schema()
    elif schema == "transaction_event":
        reader = transaction_schema()
    else:
        reader = load_schema(schema)
    registry = None
    if schema_registry_url:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        registry = SchemaRegistryClient({"url": schema_registry_url})
    decoder = make_decoder(fmt, reader_schema=reader, registry=registry)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"streamer-tail-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": False,
            **client_properties(),
        }
    )
    consumer.subscribe([topic])
    shown = 0
    try:
        while not count or shown < count:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            decoded = decoder.decode(msg.value())
            line = (
                {
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "rejected": decoded.error_class,
                    "reason": decoded.message,
                }
                if isinstance(decoded, Rejection)
                else decoded
            )
            sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
            sys.stdout.flush()
            shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return shown
