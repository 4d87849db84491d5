"""The settings by concern, as the code reads them: frozen, typed, built from ``Settings``.

``Settings`` is the surface users write (flat ``STREAMER_*`` names); these sections are
what the client factory (``streamer.clients``) and the service are built from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

SubjectStrategy = Literal["topic", "record", "topic_record"]
"""Confluent's subject name strategies: ``<topic>-value``, ``<record full name>``,
``<topic>-<record full name>``."""


@dataclass(frozen=True)
class KafkaSettings:
    """What every Kafka client is built from (``clients.Clients``, ``kafka.config``)."""

    bootstrap_servers: str
    group_id: str
    group_instance_id: str  # empty: dynamic membership
    properties: dict[str, str]
    consumer_properties: dict[str, str]
    producer_properties: dict[str, str]
    transactional_id: str  # empty: not exactly-once


@dataclass(frozen=True)
class RedisSettings:
    """What the feature cache and its client are built from."""

    url: SecretStr
    password: SecretStr | None
    username: str | None
    budget_ms: float
    key_prefix: str
    timeout_ms: float
    breaker_failures: int
    breaker_cooldown_s: float
    ssl_ca_certs: Path | None
    ssl_certfile: Path | None
    ssl_keyfile: Path | None
    required: bool
    mode: Literal["single", "cluster", "sentinel"] = "single"
    sentinels: str = ""
    sentinel_service: str = "mymaster"


@dataclass(frozen=True)
class RegistrySettings:
    """The schema registry (Confluent framing): URL, client properties (auth, TLS), and
    the serializer options users of confluent-kafka's serializers know."""

    url: str
    properties: dict[str, str]
    user_info: SecretStr | None = None
    auto_register: bool = True
    use_latest: bool = False
    subject_strategy: SubjectStrategy = "topic"
    unknown_id_ttl_s: float = 1.0


@dataclass(frozen=True)
class ModelSettings:
    """Which model scores, where the file registry is, and ONNX Runtime's threads."""

    spec: str
    models_dir: Path
    onnx_threads: int
    shadow_spec: str = ""
    watch_interval_s: float = 5.0
    drift_window_s: float = 600.0


@dataclass(frozen=True)
class TopicSettings:
    """The stream's topics, the dead-letter one resolved."""

    input: str
    output: str
    dead_letter: str
