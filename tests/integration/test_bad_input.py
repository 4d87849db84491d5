"""Bad input never stops the stream and never loses an event (on the real broker and Redis)."""

from __future__ import annotations

import io
import itertools
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from fastavro import schemaless_reader

from streamer.codec.schemas import known_schemas, transaction_schema
from streamer.codec.wire import make_encoder
from streamer.dev.devstack.redis import RedisServer
from streamer.dev.generator import traceparent
from streamer.dev.synth import generate_events, make_population
from tests.integration.conftest import Bed
from tests.integration.streamer_proc import (
    decode_single_object,
    load_synthetic_features,
    plain_schema,
    read_all,
    start_streamer,
    stop,
    wait_caught_up,
)

VALID = 10_000


def _is_valid_avro(payload: bytes) -> bool:
    """Independent oracle: plain fastavro, the writer schema by fingerprint, no bytes left."""
    schema = known_schemas().get(payload[2:10]) if payload[:2] == b"\xc3\x01" else None
    if schema is None:
        return False
    buf = io.BytesIO(payload[10:])
    try:
        schemaless_reader(buf, schema, None)
    except Exception:  # noqa: BLE001 - any failure means invalid
        return False
    return buf.tell() == len(payload) - 10


def _poison(valid: list[bytes], n: int, rng: random.Random) -> list[bytes | None]:
    out: list[bytes | None] = []
    while len(out) < n:
        base = rng.choice(valid)
        kind = len(out) % 6
        if kind == 0:
            out.append(rng.randbytes(rng.randint(1, 300)))
        elif kind == 1:
            out.append(base[: rng.randint(1, len(base) - 1)])  # truncated write
        elif kind == 2:
            flipped = bytearray(base)
            bit = rng.randrange(len(flipped) * 8)
            flipped[bit // 8] ^= 1 << (bit % 8)
            if not _is_valid_avro(bytes(flipped)):
                out.append(bytes(flipped))
        elif kind == 3:
            out.append(b"\x00\x00\x00\x00\x07" + base[10:])  # confluent framing on this topic
        elif kind == 4:
            out.append(None)  # tombstone
        else:
            out.append(b"" if rng.random() < 0.5 else b"\xc3\x01" + rng.randbytes(8) + base[10:])
    return out


def test_ten_thousand_poison_messages_among_ten_thousand_valid_events(bed: Bed) -> None:
    load_synthetic_features(bed.redis_url, bed.prefix)
    rng = random.Random(20261124)
    encoder = make_encoder("single-object", schema=transaction_schema())
    now = time.time_ns() // 1_000_000
    events = generate_events(make_population(7, 3000, 300), VALID, seed=5, start_ms=now)
    valid = [encoder.encode({**e, "event_time": now}) for e in events]
    poison = _poison(valid, VALID, rng)
    stream: list[tuple[bytes | None, bytes]] = [
        (v, e["card_id"].encode()) for v, e in zip(valid, events, strict=False)
    ]
    stream += [(p, f"poison-{i}".encode()) for i, p in enumerate(poison)]
    rng.shuffle(stream)
    producer = Producer({"bootstrap.servers": bed.kafka, "linger.ms": 10})
    for value, key in stream:
        producer.produce(
            bed.topics["input_topic"], value, key, headers=[("traceparent", traceparent())]
        )
        producer.poll(0)
    assert producer.flush(60) == 0

    proc = start_streamer(bed.tmp / "streamer.log", **bed.settings)
    try:
        wait_caught_up(bed.kafka, bed.group, bed.topics["input_topic"], 240, proc)
        assert proc.poll() is None, "the streamer must survive the poison"
    finally:
        assert stop(proc) == 0, (bed.tmp / "streamer.log").read_text()[-3000:]

    scored = read_all(bed.kafka, bed.topics["output_topic"], VALID)
    dead = read_all(bed.kafka, bed.topics["dlq_topic"], VALID)
    scored_ids = Counter(
        decode_single_object(m.value(), plain_schema("scored_event"))["transaction_id"]
        for m in scored
    )
    assert scored_ids == Counter(e["transaction_id"] for e in events)
    assert len(dead) == VALID
    # Originals untouched: the same multiset of (key, value) as the poison produced.
    assert Counter((m.key(), m.value()) for m in dead) == Counter(
        (f"poison-{i}".encode(), p) for i, p in enumerate(poison)
    )
    reasons = Counter()
    for m in dead:
        headers = dict(m.headers())
        assert headers["traceparent"].startswith(b"00-")  # the original headers are kept
        for name in (
            "streamer.error.class",
            "streamer.error.message",
            "streamer.error.stage",
            "streamer.original.topic",
            "streamer.original.partition",
            "streamer.original.offset",
            "streamer.original.timestamp",
            "streamer.consumer.group",
        ):
            assert headers.get(name), name
        assert headers["streamer.original.topic"] == bed.topics["input_topic"].encode()
        assert headers["streamer.consumer.group"] == bed.group.encode()
        reasons[headers["streamer.error.class"].decode()] += 1
    assert {"Tombstone", "EmptyMessage", "Truncated", "BadMagicByte", "UnknownFingerprint"} <= set(
        reasons
    )


def test_redis_down_for_ten_seconds_degrades_then_recovers(
    kafka_bootstrap: str,
    topics: dict[str, str],
    group_id: str,
    tmp_path: Path,
) -> None:
    """Redis killed mid-run: events are scored DEGRADED, none lost, none stalled; then normal."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        load_synthetic_features(server.url, "")
        proc = start_streamer(
            tmp_path / "streamer.log",
            kafka_bootstrap_servers=kafka_bootstrap,
            redis_url=server.url,
            group_id=group_id,
            input_format="single-object",
            output_format="single-object",
            metrics_port="0",
            max_wait_ms="20",
            redis_breaker_cooldown_s="1",
            **topics,
        )
        rate, seconds = 400, 30  # well past Redis's return: events after it
        events = generate_events(make_population(7, 3000, 300), rate * seconds, seed=9, start_ms=0)
        encoder = make_encoder("single-object", schema=transaction_schema())
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
        sent_at: dict[str, int] = {}

        def send() -> None:
            started = time.monotonic()
            for i, e in enumerate(events):
                time.sleep(max(0.0, started + i / rate - time.monotonic()))  # why: pacing
                stamped = {**e, "event_time": time.time_ns() // 1_000_000}
                sent_at[e["transaction_id"]] = stamped["event_time"]
                producer.produce(topics["input_topic"], encoder.encode(stamped), e["card_id"])
                producer.poll(0)
            producer.flush(30)

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(6)  # why: the outage sits at 6-16 s of the fixed 30 s stream
        down_at = time.time_ns() // 1_000_000
        server.stop()
        time.sleep(10)  # why: Redis stays down a fixed 10 s, the outage under test
        server.start()
        load_synthetic_features(server.url, "")
        up_at = time.time_ns() // 1_000_000
        sender.join()
        try:
            wait_caught_up(kafka_bootstrap, group_id, topics["input_topic"], 120, proc)
        finally:
            assert stop(proc) == 0, (tmp_path / "streamer.log").read_text()[-3000:]
    finally:
        server.stop()

    out = [
        decode_single_object(m.value(), plain_schema("scored_event"))
        for m in read_all(kafka_bootstrap, topics["output_topic"], len(events))
    ]
    by_id: dict[str, dict[str, Any]] = {o["transaction_id"]: o for o in out}
    assert set(by_id) == set(sent_at), "no event is lost"
    degraded = [o for o in out if o["feature_status"] == "DEGRADED"]
    assert len(degraded) > rate * 5, "events during the outage are scored with defaults"
    assert all(down_at - 2000 <= o["event_time"] <= up_at + 2000 for o in degraded)
    later = [o for o in out if o["event_time"] > up_at + 3000]
    assert later
    assert all(o["feature_status"] == "COMPLETE" for o in later), "back to normal"
    during = sorted(o["publish_time"] for o in out if down_at <= o["event_time"] <= up_at)
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert max(gaps) < 1500, f"the loop stalled for {max(gaps)} ms while Redis was down"
    assert max(o["publish_time"] - o["event_time"] for o in degraded) < 2000
