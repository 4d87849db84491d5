"""librdkafka settings, converted from the Kafka settings section in one place.

Our defaults first, then ``kafka_properties`` (shared: security settings belong here),
then the consumer- or producer-only properties; the user's value always wins, except for
the few settings at-least-once correctness depends on, which are fixed.
"""

from __future__ import annotations

from streamer.config.sections import KafkaSettings

_CONSUMER_DEFAULTS: dict[str, str | int | float | bool] = {
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    "partition.assignment.strategy": "cooperative-sticky",
    # With static membership (group.instance.id, on by default) a restarted instance takes
    # its partitions back at once (0.4-0.8 s measured); the session timeout is then only how
    # long a dead instance's partitions wait before they move: 10 s measured 10.0 s, against
    # 43 s with librdkafka's 45 s default. KIP-848 (group.protocol=consumer) did not resume
    # a restarted static member within 120 s, and its session timeout is the broker's
    # (45 s floor by default). Figures and command: README, "Failover".
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 3_000,
    "max.poll.interval.ms": 300_000,
    "fetch.wait.max.ms": 100,
}
# Offsets are stored and committed by streamer after the output is acknowledged.
_CONSUMER_FIXED: dict[str, str | int | float | bool] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}
# What a producer does on a success report (count it, acknowledge an input) must not be
# switched off by a setting: the stream's publisher alone reads silence as success, and
# turns failure-only reports on for its own producer (``STREAM_PRODUCER``).
_PRODUCER_FIXED: dict[str, str | int | float | bool] = {
    "delivery.report.only.error": False,
}
STREAM_PRODUCER: dict[str, str | int | float | bool] = {"delivery.report.only.error": True}
"""The stream's producer settings beyond ``producer_config``: failure reports only
(``kafka.publisher``)."""
_EOS_TRANSACTION_TIMEOUT_MS = 30_000
_PRODUCER_DEFAULTS: dict[str, str | int | float | bool] = {
    "enable.idempotence": True,
    "acks": "all",
    # 1 ms, not 5: a micro-batch is produced in one burst, so linger only delays its last
    # record's send; measured here at 1,000 events/s, the publish-to-acknowledgement median
    # fell from 9 to 4-5 ms with drain throughput and CPU per event unchanged (bench/).
    "linger.ms": 1,
    "compression.type": "lz4",
    "delivery.timeout.ms": 120_000,
    # Headroom above the largest accepted input (STREAMER_MAX_MESSAGE_BYTES, 1,000,000) for
    # a dead letter's headers; just under the broker's default max.message.bytes (1,048,588).
    "message.max.bytes": 1_048_576,
}


def consumer_config(kafka: KafkaSettings) -> dict[str, str | int | float | bool]:
    config: dict[str, str | int | float | bool] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": kafka.group_id,
        "client.id": f"streamer-{kafka.group_id}",
        **_CONSUMER_DEFAULTS,
    }
    if kafka.group_instance_id:
        config["group.instance.id"] = kafka.group_instance_id
    return {**config, **kafka.properties, **kafka.consumer_properties, **_CONSUMER_FIXED}


def producer_config(kafka: KafkaSettings) -> dict[str, str | int | float | bool]:
    config: dict[str, str | int | float | bool] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": f"streamer-{kafka.group_id}",
        **_PRODUCER_DEFAULTS,
        **kafka.properties,
        **kafka.producer_properties,
        **_PRODUCER_FIXED,
    }
    if kafka.transactional_id:
        config["transactional.id"] = kafka.transactional_id
        # A crashed instance's open transaction holds its partitions' offsets unstable until
        # it times out (or the instance restarts with the same id): keep that short.
        # librdkafka requires delivery.timeout.ms <= transaction.timeout.ms.
        user = {**kafka.properties, **kafka.producer_properties}
        if "transaction.timeout.ms" not in user:
            config["transaction.timeout.ms"] = _EOS_TRANSACTION_TIMEOUT_MS
            if "delivery.timeout.ms" not in user and "message.timeout.ms" not in user:
                config["delivery.timeout.ms"] = _EOS_TRANSACTION_TIMEOUT_MS
    return config


def admin_config(kafka: KafkaSettings) -> dict[str, str | int | float | bool]:
    return {"bootstrap.servers": kafka.bootstrap_servers, **kafka.properties}
