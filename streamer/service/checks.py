"""Start-up checks: the broker answers, the topics exist, the schema registry answers.

Each failure is a ``DependencyError`` (exit 3) with one line naming what to check. An
unreachable Redis is not fatal unless required: scoring starts degraded and recovers.
"""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamer.clients import ClientErrors
from streamer.config.redaction import redact_url
from streamer.config.settings import Settings
from streamer.errors import DependencyError


def check_kafka(
    admin: AdminClient,
    settings: Settings,
    topics: Mapping[str, str],
    *,
    errors: ClientErrors | None = None,
    timeout: float = 10.0,
) -> None:
    """The broker answers within ``timeout`` and each topic exists (``{setting: topic}``).

    A refused login is reported as such (librdkafka otherwise says "transport failure").
    """
    servers = settings.kafka_bootstrap_servers
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        auth = errors.authentication() if errors is not None else None
        if auth is not None:
            raise DependencyError(
                f"Kafka at {servers} refused authentication ({auth}); check the SASL/TLS "
                "credentials in STREAMER_KAFKA_PROPERTIES / STREAMER_KAFKA_PROP_*"
            ) from None
        reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        raise DependencyError(
            f"cannot reach Kafka at {servers} within {timeout:.0f}s ({reason}); check "
            "STREAMER_KAFKA_BOOTSTRAP_SERVERS and the security settings in "
            "STREAMER_KAFKA_PROPERTIES"
        ) from None
    for setting, topic in topics.items():
        if topic not in metadata.topics:
            raise DependencyError(
                f"topic {topic!r} does not exist on {servers}; "
                f"create it (streamer topics create) or change {setting}"
            )


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
