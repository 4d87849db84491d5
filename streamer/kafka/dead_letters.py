"""Dead letters: their headers, and for operators reading them back, counting and replaying.

Dead letters hold the original key, value, headers and timestamp, plus ``streamer.*``
headers saying what failed, at which stage, and where the record came from. ``replay``
sends the originals back to the input topic (the ``streamer.*`` headers removed, a
``streamer.replayed`` header added), so that after a fix, a replay loses nothing.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streamer.errors import DependencyError, Rejection
from streamer.kafka.headers import Headers, read_headers

_OURS = "streamer."


def dead_letter_headers(msg: Message, rejection: Rejection, group_id: str) -> Headers:
    """The original headers, then what failed, where, and where the record came from."""
    _, timestamp = msg.timestamp()
    original = read_headers(msg)
    unreadable = [("streamer.original.headers", b"unreadable")] if original is None else []
    return [
        *(original or unreadable),
        ("streamer.error.class", rejection.error_class.encode()),
        ("streamer.error.message", rejection.message.encode("utf-8", "replace")[:4096]),
        ("streamer.error.stage", rejection.stage.encode()),
        ("streamer.original.topic", (msg.topic() or "").encode()),
        ("streamer.original.partition", str(msg.partition()).encode()),
        ("streamer.original.offset", str(msg.offset()).encode()),
        ("streamer.original.timestamp", str(timestamp).encode()),
        ("streamer.consumer.group", group_id.encode()),
    ]


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter record, its reasons parsed from the headers."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: list[tuple[str, bytes]]

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return ""

    @property
    def error_class(self) -> str:
        return self.header("streamer.error.class")

    @property
    def stage(self) -> str:
        return self.header("streamer.error.stage")

    @property
    def original_topic(self) -> str:
        return self.header("streamer.original.topic")

    @property
    def original_offset(self) -> int:
        raw = self.header("streamer.original.offset")
        return int(raw) if raw.lstrip("-").isdigit() else -1

    def summary(self) -> dict[str, object]:
        """What ``dlq inspect --json`` prints for this dead letter."""
        return {
            "partition": self.partition,
            "offset": self.offset,
            "stage": self.stage,
            "error_class": self.error_class,
            "message": self.header("streamer.error.message"),
            "original_topic": self.original_topic,
            "original_offset": self.original_offset,
            "original_partition": self.header("streamer.original.partition"),
            "consumer_group": self.header("streamer.consumer.group"),
            "value_bytes": len(self.value or b""),
        }

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith(_OURS)]


def read(consumer: Consumer, topic: str, *, timeout: float = 10.0) -> Iterator[DeadLetter]:
    """Every record now in ``topic``, from the beginning to the current end, then stop.

    ``consumer`` is a throwaway one (``Clients.operator_consumer``); it is closed here.
    """
    try:
        try:
            meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
        except KafkaException as exc:
            raise DependencyError(f"cannot read topic {topic!r}: {exc}") from None
        if meta.error is not None:
            raise DependencyError(f"topic {topic!r}: {meta.error.str()}; check STREAMER_DLQ_TOPIC")
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        idle = 0
        while ends and idle < 10:  # ten empty seconds: the end was a control record
            batch = consumer.consume(500, 1.0)
            idle = 0 if batch else idle + 1
            for msg in batch:
                if msg.error() is not None:
                    continue
                partition, offset = msg.partition() or 0, msg.offset() or 0
                yield DeadLetter(
                    partition,
                    offset,
                    msg.key(),
                    msg.value(),
                    msg.timestamp()[1],
                    read_headers(msg) or [],
                )
                if offset + 1 >= ends.get(partition, 0):
                    ends.pop(partition, None)
    finally:
        consumer.close()


def counts(letters: list[DeadLetter]) -> Counter[tuple[str, str]]:
    """How many dead letters per (stage, error class)."""
    return Counter((d.stage, d.error_class) for d in letters)


def selector(
    error_class: str | None = None, from_offset: int | None = None, to_offset: int | None = None
) -> Callable[[DeadLetter], bool]:
    """A filter on error class and on the ORIGINAL input offset range (inclusive)."""

    def keep(letter: DeadLetter) -> bool:
        if error_class and letter.error_class != error_class:
            return False
        if from_offset is not None and letter.original_offset < from_offset:
            return False
        return to_offset is None or letter.original_offset <= to_offset

    return keep


def replay(
    letters: list[DeadLetter], producer: Producer, *, target: str | None = None, dlq_topic: str = ""
) -> int:
    """Send the originals back (to ``target`` or each one's original topic); returns sent."""
    failures: list[str] = []

    def delivered(err: object, msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    for letter in letters:
        topic = target or letter.original_topic
        if not topic:
            raise ValueError(
                f"dead letter at offset {letter.offset} has no original topic; give --to"
            )
        headers: list[tuple[str, str | bytes | None]] = [
            *letter.original_headers(),
            ("streamer.replayed", f"{dlq_topic}[{letter.partition}]@{letter.offset}".encode()),
        ]
        producer.produce(
            topic,
            letter.value,
            letter.key,
            headers=headers,
            on_delivery=delivered,
            timestamp=max(letter.timestamp, 0),
        )
        producer.poll(0)
    left = producer.flush(60)
    if failures or left:
        raise DependencyError(f"replay incomplete: {len(failures)} failed, {left} unacknowledged")
    return len(letters)


def truncated(
    key: bytes | None, value: bytes | None, headers: Headers, budget: int
) -> tuple[bytes, bytes, Headers]:
    """A dead letter cut to about ``budget`` bytes, saying what it was and that it was cut.

    The original value's size and sha256 are kept in headers, so an operator can match it
    to the source; the original headers stay unless they alone would take half the budget.
    """
    raw_key, raw_value = key or b"", value or b""
    marks: Headers = [
        ("streamer.truncated", b"true"),
        ("streamer.original.size", str(len(raw_value)).encode()),
        ("streamer.original.key.size", str(len(raw_key)).encode()),
        ("streamer.original.sha256", hashlib.sha256(raw_value).hexdigest().encode()),
    ]
    kept = headers
    if _size(headers) + _size(marks) > budget // 2:
        kept = [(k, v[:512]) for k, v in headers if k.startswith(_OURS)]
        marks.append(("streamer.original.headers", b"dropped"))
    room = max(budget - _size(kept) - _size(marks) - 512, 0)  # 512: record overhead
    cut_key = raw_key[: min(len(raw_key), room // 4)]
    return cut_key, raw_value[: room - len(cut_key)], [*kept, *marks]


def _size(headers: Headers) -> int:
    return sum(len(k) + len(v) + 8 for k, v in headers)
