"""One consumed micro-batch, sorted into what to score, what to dead-letter, what to re-read.

Pure: decoding results only; no Kafka I/O, no Redis. Validation and scoring happen in the
scoring kernel; the loop acts on what both return.

A batch whose every payload is plain is decoded in one call into columns
(``Decoder.decode_columns``, no dict per event); any other batch one message at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message

from streamer.codec.columns import Records
from streamer.codec.wire import is_retriable
from streamer.errors import Rejection

TopicPartition = tuple[str, int]


class Decoder(Protocol):
    def decode(self, payload: bytes | None) -> dict[str, Any] | Rejection: ...


DecodeColumns = Callable[[Sequence[bytes | None]], Records | None]


@dataclass
class Batch:
    """A micro-batch after decoding, in consumption order."""

    messages: list[Message] = field(default_factory=list)  # decoded
    events: Sequence[dict[str, Any]] = field(default_factory=list)  # aligned with ``messages``
    positions: list[tuple[TopicPartition, int]] = field(default_factory=list)  # aligned too
    rejected: list[tuple[Message, Rejection]] = field(default_factory=list)
    offsets: dict[TopicPartition, list[int]] = field(default_factory=dict)  # every consumed one
    reread: dict[TopicPartition, int] = field(default_factory=dict)  # registry down: re-read from
    errors: list[KafkaError] = field(default_factory=list)  # consumer errors, not messages

    @property
    def consumed(self) -> int:
        return sum(len(o) for o in self.offsets.values())


def position(msg: Message) -> tuple[TopicPartition, int]:
    """(topic, partition), offset of a consumed message (never None for a non-error one)."""
    return (msg.topic() or "", msg.partition() or 0), msg.offset() or 0


def sort_batch(messages: Sequence[Message], decoder: Decoder) -> Batch:
    """Decode every message. A partition whose message could not be decoded
    for a reason that is not the message's fault (the schema registry is unreachable) is
    cut at that message: it and the rest of that partition are to be read again."""
    batch = Batch()
    consumed: list[Message] = []
    for msg in messages:
        error = msg.error()
        if error is None:
            consumed.append(msg)
        else:
            batch.errors.append(error)
    positions = list(map(position, consumed))
    decode_columns: DecodeColumns | None = getattr(decoder, "decode_columns", None)
    events = decode_columns([m.value() for m in consumed]) if decode_columns else None
    if events is None:
        return _one_by_one(batch, consumed, positions, decoder)
    batch.messages, batch.events, batch.positions = consumed, events, positions
    for tp, run in groupby(positions, key=itemgetter(0)):  # a partition's runs, per batch
        batch.offsets.setdefault(tp, []).extend(map(itemgetter(1), run))
    return batch


def _one_by_one(
    batch: Batch,
    consumed: list[Message],
    positions: list[tuple[TopicPartition, int]],
    decoder: Decoder,
) -> Batch:
    # Per message on the hot path: bound methods and attributes looked up once.
    decode, offsets, reread = decoder.decode, batch.offsets, batch.reread
    decoded_messages, decoded_positions = batch.messages, batch.positions
    events: list[dict[str, Any]] = []
    batch.events = events
    for msg, (tp, offset) in zip(consumed, positions, strict=True):
        if tp in reread:
            continue
        seen = offsets.get(tp)
        if seen is None:
            offsets[tp] = [offset]
        else:
            seen.append(offset)
        decoded = decode(msg.value())
        if not isinstance(decoded, Rejection):
            decoded_messages.append(msg)
            events.append(decoded)
            decoded_positions.append((tp, offset))
        elif is_retriable(decoded):
            reread[tp] = offset
        else:
            batch.rejected.append((msg, decoded))
    return batch
