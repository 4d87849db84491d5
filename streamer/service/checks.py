"""Start-up checks: the broker answers, the topics exist, the schema registry answers.

Each failure is a ``DependencyError`` (exit 3) with one line naming what to check. An
unreachable Redis is not fatal unless required: scoring starts degraded and recovers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._metadata import ClusterMetadata

from streamer.clients import ClientErrors
from streamer.config.redaction import redact_url
from streamer.config.settings import Settings
from streamer.errors import DependencyError

FAIL_FAST_S = 2.0  # how long a broker that refuses connections gets before we give up


def check_kafka(
    admin: AdminClient,
    settings: Settings,
    topics: Mapping[str, str],
    *,
    errors: ClientErrors | None = None,
    timeout: float = 10.0,
) -> None:
    """The broker answers within ``timeout`` and each topic exists (``{setting: topic}``).

    A refused login is reported as such (librdkafka otherwise says "transport failure"),
    as soon as it is seen: metadata is asked for in 1 s steps, and between them the admin
    client is polled, which is what delivers librdkafka's errors to ``errors``.
    """
    servers = settings.kafka_bootstrap_servers
    metadata = _metadata(admin, servers, errors, timeout)
    for setting, topic in topics.items():
        if topic not in metadata.topics:
            raise DependencyError(
                f"topic {topic!r} does not exist on {servers}; "
                f"create it (streamer topics create) or change {setting}"
            )


def _metadata(
    admin: AdminClient, servers: str, errors: ClientErrors | None, timeout: float
) -> ClusterMetadata:
    """The cluster's metadata, asked in one-second slices, polling in between: that is what
    delivers librdkafka's errors to ``errors``. A refused login stops at once; a refused
    connection after ``FAIL_FAST_S`` (waiting longer would not change the answer); a
    silent network (packets dropped) gets the whole ``timeout``."""
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        try:
            return admin.list_topics(timeout=max(0.1, min(1.0, timeout - elapsed)))
        except KafkaException as exc:
            admin.poll(0)
            auth = errors.authentication() if errors is not None else None
            if auth is not None:
                raise DependencyError(
                    f"Kafka at {servers} refused authentication ({auth}); check the SASL/TLS "
                    "credentials in STREAMER_KAFKA_PROPERTIES / STREAMER_KAFKA_PROP_*"
                ) from None
            elapsed = time.monotonic() - started
            reported = errors is not None and errors.last is not None
            if elapsed >= timeout or (reported and elapsed >= FAIL_FAST_S):
                reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc
                raise DependencyError(
                    f"cannot reach Kafka at {servers} ({reason}); check "
                    "STREAMER_KAFKA_BOOTSTRAP_SERVERS and the security settings in "
                    "STREAMER_KAFKA_PROPERTIES"
                ) from None


def check_topics(
    admin: AdminClient, settings: Settings, errors: ClientErrors | None = None
) -> None:
    """The broker answers and the input, output and dead-letter topics exist."""
    check_kafka(
        admin,
        settings,
        {
            "STREAMER_INPUT_TOPIC": settings.input_topic,
            "STREAMER_OUTPUT_TOPIC": settings.output_topic,
            "STREAMER_DLQ_TOPIC": settings.dead_letter_topic,
        },
        errors=errors,
    )


def check_schema_registry(settings: Settings, registry: object | None) -> None:
    """With the confluent framing, the schema registry answers before we consume anything,
    and accepts our credentials (a refusal is reported as such, never with the password)."""
    if registry is None:
        return
    where = redact_url(settings.schema_registry_url)
    try:
        registry.get_subjects()  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - any failure to answer is "unavailable"
        status = getattr(exc, "http_status_code", None)
        if status in (401, 403):
            raise DependencyError(
                f"the schema registry at {where} refused authentication (HTTP {status}); "
                "check basic.auth.user.info in STREAMER_SCHEMA_REGISTRY_PROPERTIES"
            ) from None
        raise DependencyError(
            f"cannot reach the schema registry at {where} ({_reason(exc)}); check "
            "STREAMER_SCHEMA_REGISTRY_URL and the TLS settings in "
            "STREAMER_SCHEMA_REGISTRY_PROPERTIES"
        ) from None


def check_output_schema(encoder: object) -> None:
    """With the confluent framing, the output schema's id is found now (registered, looked
    up or the latest version): a subject without it stops start-up (exit 3), naming it."""
    prepare = getattr(encoder, "prepare", None)
    if prepare is not None:
        prepare()


def _reason(exc: Exception) -> str:
    text = redact_url(f"{type(exc).__name__}: {exc}")
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in type(exc).__name__:
        return f"TLS: {text[:200]}"
    return type(exc).__name__
