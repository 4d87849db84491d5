"""Smoke tests of the test bed itself: the real broker and Redis behave as Kafka and Redis."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import redis
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def _consume_all(
    conf: dict[str, object], topic: str, expected: int, timeout: float = 60.0
) -> list[tuple[int, bytes]]:
    import time

    consumer = Consumer({**conf, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error():
                    raise KafkaException(msg.error())
                out.append((msg.partition(), msg.value()))
        # Anything beyond the expected count would be a duplicate or a leak: look briefly.
        out.extend((m.partition(), m.value()) for m in consumer.consume(500, 1.0) if not m.error())
    finally:
        consumer.close()
    return out


def test_thousand_messages_across_three_partitions(
    kafka_bootstrap: str, make_topic: Callable[..., str], group_id: str
) -> None:
    topic = make_topic("smoke", partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    for i in range(1000):
        producer.produce(topic, key=f"k{i % 17}", value=f"v{i}".encode())
    assert producer.flush(30) == 0

    got = _consume_all({"bootstrap.servers": kafka_bootstrap, "group.id": group_id}, topic, 1000)

    assert sorted(v for _, v in got) == sorted(f"v{i}".encode() for i in range(1000))
    assert set(Counter(p for p, _ in got)) == {0, 1, 2}


def test_read_committed_sees_committed_not_aborted(
    kafka_bootstrap: str, make_topic: Callable[..., str], group_id: str, unique: str
) -> None:
    topic = make_topic("txn", partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{unique}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(50):
        producer.produce(topic, value=f"committed-{i}".encode())
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(50):
        producer.produce(topic, value=f"aborted-{i}".encode())
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed-last")
    producer.commit_transaction(30)

    conf = {
        "bootstrap.servers": kafka_bootstrap,
        "group.id": group_id,
        "isolation.level": "read_committed",
    }
    values = {v for _, v in _consume_all(conf, topic, 51)}

    assert values == {f"committed-{i}".encode() for i in range(50)} | {b"committed-last"}

    # read_uncommitted does see the aborted records: the test above is not vacuous.
    conf_uncommitted = {**conf, "group.id": group_id + "-ru", "isolation.level": "read_uncommitted"}
    assert b"aborted-7" in {v for _, v in _consume_all(conf_uncommitted, topic, 101)}


def test_redis_pipelined_write_and_mget(redis_client: redis.Redis, redis_prefix: str) -> None:
    keys = [f"{redis_prefix}k{i}" for i in range(500)]
    with redis_client.pipeline(transaction=False) as pipe:
        for i, key in enumerate(keys):
            pipe.set(key, i.to_bytes(4, "little"))
        assert all(pipe.execute())

    values = redis_client.mget([*keys, f"{redis_prefix}missing"])

    assert [int.from_bytes(v, "little") for v in values[:-1]] == list(range(500))
    assert values[-1] is None


def test_offsets_committed_are_read_back(
    kafka_bootstrap: str, make_topic: Callable[..., str], group_id: str
) -> None:
    topic = make_topic("commit", partitions=1)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group_id})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 42)], asynchronous=False)
        (committed,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        consumer.close()
    assert committed.offset == 42
