"""``streamer consume``: tail a topic decoded, one JSON object per line (for people and jq).

Each message is decoded with its own writer schema (the fingerprint or registry id it
carries) unless ``--schema`` names a reader schema, so the input topic and the scored
topic both read without saying which is which.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import orjson
import typer

from streamer.cli.common import (
    Bootstrap,
    ConfigFile,
    RegistryUrl,
    WireFormatOption,
    topic_command,
)
from streamer.codec.schemas import Schema, known_schemas, load_schema
from streamer.codec.wire import SINGLE_OBJECT_MAGIC, WireFormat, make_decoder
from streamer.errors import Rejection


class WriterSchemaDecoder:
    """Single-object payloads decoded with the schema their fingerprint names."""

    def __init__(self, max_bytes: int) -> None:
        self._known = known_schemas()
        self._max_bytes = max_bytes
        self._decoders: dict[bytes, Any] = {}

    def decode(self, payload: bytes | None) -> dict[str, Any] | Rejection:
        fingerprint = payload[2:10] if payload and payload[:2] == SINGLE_OBJECT_MAGIC else b""
        schema = self._known.get(fingerprint)
        if schema is None:  # let the regular decoder explain what is wrong
            schema = next(iter(self._known.values()))
        decoder = self._decoders.get(fingerprint)
        if decoder is None:
            decoder = make_decoder("single-object", reader_schema=schema, max_bytes=self._max_bytes)
            self._decoders[fingerprint] = decoder
        decoded: dict[str, Any] | Rejection = decoder.decode(payload)
        return decoded


def _reader(schema: str) -> Schema | None:
    if schema in ("", "auto"):
        return None
    return load_schema(schema)


def consume(
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="[default: STREAMER_OUTPUT_TOPIC]")
    ] = None,
    bootstrap_servers: Bootstrap = None,
    fmt: WireFormatOption = None,
    schema: Annotated[
        str,
        typer.Option(
            help="Reader schema (scored_event, transaction_event or a path); "
            "default: each message's writer schema."
        ),
    ] = "",
    schema_registry_url: RegistryUrl = None,
    count: Annotated[
        int, typer.Option("--count", "-n", min=0, help="Stop after this many (0: follow).")
    ] = 0,
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    config: ConfigFile = None,
) -> None:
    """Tail a topic, decoded, one JSON object per line (for people, and for jq)."""
    factory, target, registry = topic_command(
        config,
        topic,
        "output_topic",
        kafka_bootstrap_servers=bootstrap_servers,
        schema_registry_url=schema_registry_url,
        output_format=fmt,
    )
    s = factory.settings
    decoder = _decoder(s.output_format, _reader(schema), registry, s)
    consumer = factory.operator_consumer(
        "tail", **{"auto.offset.reset": "earliest" if from_beginning else "latest"}
    )
    consumer.subscribe([target])
    _tail(consumer, decoder, count)


def _decoder(fmt: WireFormat, reader: Schema | None, registry: Any, s: Any) -> Any:
    if reader is None and fmt == "single-object":
        return WriterSchemaDecoder(s.max_message_bytes)
    if reader is None:
        from streamer.codec.schemas import scored_schema

        reader = scored_schema()
    return make_decoder(
        fmt,
        reader_schema=reader,
        registry=registry,
        max_bytes=s.max_message_bytes,
        unknown_id_ttl_s=s.schema_registry_unknown_id_ttl_s,
    )


def _tail(consumer: Any, decoder: Any, count: int) -> int:
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
