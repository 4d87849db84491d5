"""Sending any bytes to Kafka, and accounting for what streamer made of each input offset.

confluent-kafka's Python producer cannot send a header name that is not UTF-8 (a bytes
name is sent as its ``repr``; a NUL cuts the name), so such records go through ``kcat``,
which takes names, values and the key from its command line: no NUL bytes there, and no
``=`` in a name (the separator). Everything else goes through confluent-kafka, which can
send any bytes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from streamer.kafka.headers import read_headers
from tests.integration.streamer_proc import decode_single_object, plain_schema

HeaderList = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Record:
    """One input message as sent; ``transaction_id`` set when the value is a valid event."""

    key: bytes | None
    value: bytes | None
    headers: HeaderList
    transaction_id: str = ""


def needs_kcat(record: Record) -> bool:
    for name, _ in record.headers:
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            return True
        if b"\x00" in name:
            return True
    return False


def for_kcat(record: Record) -> Record:
    """What kcat can send of ``record``: NUL bytes and a name's ``=`` replaced."""
    return Record(
        None if record.key is None else record.key.replace(b"\x00", b"\x01"),
        record.value,
        [
            (
                n.replace(b"\x00", b"\x01").replace(b"=", b"-") or b"\x01",
                v.replace(b"\x00", b"\x01"),
            )
            for n, v in record.headers
        ],
        record.transaction_id,
    )


def _kcat_name(name: bytes) -> bytes:
    return name.replace(b"\x00", b"\x01").replace(b"=", b"-") or b"\x01"


def kcat_send(bootstrap: str, topic: str, partition: int, record: Record) -> None:
    binary = shutil.which("kcat")
    assert binary, "kcat is needed (apt-get install kcat; .ci/setup.sh installs it)"
    with tempfile.NamedTemporaryFile(suffix=".bin") as value_file:
        value_file.write(record.value or b"")
        value_file.flush()
        cmd: list[str | bytes] = [binary, "-P", "-b", bootstrap, "-t", topic, "-p", str(partition)]
        cmd += ["-X", "message.max.bytes=8000000", "-c", "1"]
        if record.key is not None:
            cmd += [b"-k", record.key]
        for name, value in record.headers:
            cmd += [b"-H", name + b"=" + value]
        cmd.append(value_file.name)
        done = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]


@dataclass
class Sender:
    """Sends records one at a time and remembers the input offset each one got."""

    bootstrap: str
    topic: str
    partitions: int
    sent: dict[tuple[int, int], Record] = field(default_factory=dict)
    kcat_sent: int = 0
    _producer: Producer | None = None
    _count: int = 0

    def send(self, record: Record) -> None:
        partition = self._count % self.partitions
        self._count += 1
        if needs_kcat(record):
            record = for_kcat(record)
            before = self._end(partition)
            kcat_send(self.bootstrap, self.topic, partition, record)
            self.kcat_sent += 1
            self.sent[(partition, before)] = record
            return
        offsets: list[int] = []
        producer = self._producer_once()
        producer.produce(
            self.topic,
            record.value,
            record.key,
            partition=partition,
            headers=[(n.decode(), v) for n, v in record.headers],
            on_delivery=lambda err, msg: offsets.append(-1 if err else msg.offset()),
        )
        assert producer.flush(60) == 0
        assert offsets == [offsets[0]], "no delivery report"
        assert offsets[0] >= 0, "the test's own record was refused"
        self.sent[(partition, offsets[0])] = record

    def _producer_once(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {"bootstrap.servers": self.bootstrap, "message.max.bytes": 8_000_000}
            )
        return self._producer

    def _end(self, partition: int) -> int:
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "hostile-probe"})
        try:
            return int(probe.get_watermark_offsets(TopicPartition(self.topic, partition), 10)[1])
        finally:
            probe.close()


@dataclass
class Outcomes:
    """Everything streamer wrote, by the input (partition, offset) it stands for."""

    bootstrap: str
    output_topic: str
    dlq_topic: str
    scored: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    dead: dict[tuple[int, int], list[Message]] = field(default_factory=dict)
    _consumer: Consumer | None = None

    def collect(self, until: set[tuple[int, int]], timeout: float = 60.0) -> None:
        """Read outputs until every input in ``until`` is accounted for, then one quiet second."""
        consumer = self._consumer_once()
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            got = consumer.consume(500, 0.2)
            for msg in got:
                if msg.error() is None:
                    self._add(msg)
            if until <= self.accounted():
                quiet_until = quiet_until or time.monotonic() + 1.0
                if not got and time.monotonic() > quiet_until:
                    return

    def accounted(self) -> set[tuple[int, int]]:
        return set(self.scored) | set(self.dead)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    def _add(self, msg: Message) -> None:
        if msg.topic() == self.output_topic:
            out = decode_single_object(msg.value(), plain_schema("scored_event"))
            key = (out["source_partition"], out["source_offset"])
            self.scored.setdefault(key, []).append(out["transaction_id"])
            return
        headers = dict(read_headers(msg) or [])
        key = (
            int(headers["streamer.original.partition"]),
            int(headers["streamer.original.offset"]),
        )
        self.dead.setdefault(key, []).append(msg)

    def _consumer_once(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "group.id": f"outcomes-{time.monotonic_ns()}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                }
            )
            self._consumer.subscribe([self.output_topic, self.dlq_topic])
        return self._consumer


def same_original(letter: Message, record: Record) -> bool:
    """A dead letter holds its input's key and value, or a cut-down copy that says so."""
    headers = dict(read_headers(letter) or [])
    if headers.get("streamer.truncated") != b"true":
        return (letter.key() or b"") == (record.key or b"") and letter.value() == record.value
    original = record.value or b""
    return (
        headers["streamer.original.sha256"] == hashlib.sha256(original).hexdigest().encode()
        and headers["streamer.original.size"] == str(len(original)).encode()
        and original.startswith(letter.value() or b"")
        and (record.key or b"").startswith(letter.key() or b"")
    )


def kcat_available() -> Path:
    binary = shutil.which("kcat")
    assert binary, "kcat is needed (apt-get install kcat; .ci/setup.sh installs it)"
    return Path(binary)
