"""librdkafka settings, converted from ``Settings`` in one place.

Our defaults first, then ``kafka_properties`` (shared: security settings belong here),
then the consumer- or producer-only properties; the user's value always wins, except for
the few settings at-least-once correctness depends on, which are fixed.
"""

from __future__ import annotations

from streamer.config.settings import Settings

_CONSUMER_DEFAULTS: dict[str, str | int | float | bool] = {
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    "partition.assignment.strategy": "cooperative-sticky",
    "session.timeout.ms": 45_000,
    "max.poll.interval.ms": 300_000,
    "fetch.wait.max.ms": 100,
}
# Offsets are stored and committed by streamer after the output is acknowledged.
_CONSUMER_FIXED: dict[str, str | int | float | bool] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}
_EOS_TRANSACTION_TIMEOUT_MS = 30_000
_PRODUCER_DEFAULTS: dict[str, str | int | float | bool] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
    "delivery.timeout.ms": 120_000,
}


def consumer_config(settings: Settings) -> dict[str, str | int | float | bool]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": settings.group_id,
        "client.id": f"streamer-{settings.group_id}",
        **_CONSUMER_DEFAULTS,
        **settings.kafka_properties,
        **settings.consumer_properties,
        **_CONSUMER_FIXED,
    }


def producer_config(settings: Settings) -> dict[str, str | int | float | bool]:
    config: dict[str, str | int | float | bool] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": f"streamer-{settings.group_id}",
        **_PRODUCER_DEFAULTS,
        **settings.kafka_properties,
        **settings.producer_properties,
    }
    if settings.exactly_once:
        config["transactional.id"] = settings.effective_transactional_id()
        # A crashed instance's open transaction holds its partitions' offsets unstable until
        # it times out (or the instance restarts with the same id): keep that short.
        # librdkafka requires delivery.timeout.ms <= transaction.timeout.ms.
        user = {**settings.kafka_properties, **settings.producer_properties}
        if "transaction.timeout.ms" not in user:
            config["transaction.timeout.ms"] = _EOS_TRANSACTION_TIMEOUT_MS
            if "delivery.timeout.ms" not in user and "message.timeout.ms" not in user:
                config["delivery.timeout.ms"] = _EOS_TRANSACTION_TIMEOUT_MS
    return config


def admin_config(settings: Settings) -> dict[str, str | int | float | bool]:
    return {"bootstrap.servers": settings.kafka_bootstrap_servers, **settings.kafka_properties}
