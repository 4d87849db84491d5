"""One factory for every client streamer opens, built from one ``Settings``.

Consumer, Producer, AdminClient, the Redis client and the schema registry client all come
from here, so TLS, SASL, Redis AUTH and registry credentials work the same for ``run``,
``produce``, ``consume``, ``dlq``, ``features load``, ``score-file`` and ``models``.
Constructors make no network call (librdkafka and redis-py connect on first use). Every
Kafka client logs through the ``librdkafka`` logger, so its lines come out as structured
logs like ours, deduplicated (``observability.logs``). A property librdkafka refuses is a
``ConfigError`` naming the variable it came from.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from streamer.config.loader import property_origin
from streamer.config.redaction import redact_url
from streamer.config.registry import registry_client_config
from streamer.config.settings import Settings
from streamer.errors import ConfigError
from streamer.kafka.config import admin_config, consumer_config, producer_config
from streamer.kafka.membership import LIBRDKAFKA_LOGGER

if TYPE_CHECKING:
    from redis import Redis

Config = dict[str, str | int | float | bool]


class ClientErrors:
    """Errors librdkafka reported through ``error_cb``, kept to explain a failed check."""

    _AUTH_CODES = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})

    def __init__(self) -> None:
        self.last: KafkaError | None = None
        self._auth: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        self.last = error
        if error.code() in self._AUTH_CODES or "authentication" in error.str().lower():
            self._auth = error
        logging.getLogger(LIBRDKAFKA_LOGGER).warning("%s", error.str())

    def authentication(self) -> str | None:
        """What the broker said when it refused a login, if it did."""
        return self._auth.str() if self._auth is not None else None


class Clients:
    """Builds clients from settings; each call returns a new client the caller closes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.errors = ClientErrors()

    def consumer(self, *, group_id: str | None = None, **overrides: Any) -> Consumer:
        """The stream's consumer, or an operator's (own group, no static membership)."""
        config = consumer_config(self.settings.kafka)
        if group_id is not None:
            config["group.id"] = group_id
            config.pop("group.instance.id", None)
        consumer: Consumer = _build(Consumer, self._kafka(config, overrides))
        return consumer

    def operator_consumer(self, purpose: str, **overrides: Any) -> Consumer:
        """A consumer in a throwaway group of its own (``consume``, ``dlq``), committing nothing."""
        group = f"streamer-{purpose}-{uuid.uuid4().hex[:8]}"
        return self.consumer(group_id=group, **{"enable.auto.commit": False, **overrides})

    def producer(self, **overrides: Any) -> Producer:
        producer: Producer = _build(
            Producer, self._kafka(producer_config(self.settings.kafka), overrides)
        )
        return producer

    def admin(self, **overrides: Any) -> AdminClient:
        admin: AdminClient = _build(
            AdminClient, self._kafka(admin_config(self.settings.kafka), overrides)
        )
        return admin

    def redis(self, *, timeout_ms: float | None = None) -> Redis:
        """The feature cache's client: fail-fast timeouts, AUTH and TLS from the settings;
        one node, a Redis Cluster or a Sentinel-managed primary (``STREAMER_REDIS_MODE``).
        redis-py is imported here, not with this module: ``run`` builds its consumer first
        and joins the group while the slower imports run (``service.runner``)."""
        from streamer.features.redis_client import make_redis_client, parse_sentinels

        r = self.settings.redis
        return make_redis_client(
            r.url.get_secret_value(),
            password=r.password.get_secret_value() if r.password else None,
            username=r.username,
            timeout_ms=timeout_ms or r.timeout_ms,
            ssl_ca_certs=str(r.ssl_ca_certs) if r.ssl_ca_certs else None,
            ssl_certfile=str(r.ssl_certfile) if r.ssl_certfile else None,
            ssl_keyfile=str(r.ssl_keyfile) if r.ssl_keyfile else None,
            mode=r.mode,
            sentinels=parse_sentinels(r.sentinels),
            service=r.sentinel_service,
        )

    def schema_registry(self) -> Any | None:
        """A ``SchemaRegistryClient`` when a registry URL is set, else None (auth and TLS
        from ``STREAMER_SCHEMA_REGISTRY_PROPERTIES``, see ``config.registry``)."""
        registry = self.settings.registry
        if not registry.url:
            return None
        from confluent_kafka.schema_registry import SchemaRegistryClient

        config = registry_client_config(registry, self.settings.kafka.properties)
        try:
            return SchemaRegistryClient(config)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"STREAMER_SCHEMA_REGISTRY_PROPERTIES / STREAMER_SCHEMA_REGISTRY_URL "
                f"({redact_url(registry.url)}): {redact_url(str(exc))}"
            ) from None

    def _kafka(self, config: Config, overrides: dict[str, Any]) -> Config:
        if not self.settings.kafka_bootstrap_servers:
            raise ConfigError(
                "STREAMER_KAFKA_BOOTSTRAP_SERVERS is required but not set "
                "(or give --bootstrap-servers)"
            )
        return {
            **config,
            **overrides,
            "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
            "error_cb": self.errors,
        }


def _build(cls: Any, config: Config) -> Any:
    try:
        return cls(config)
    except KafkaException as exc:
        error = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        raise ConfigError(
            f"librdkafka refused the Kafka settings: {error}; {_origin(error)}"
        ) from None


def _origin(error: str) -> str:
    named = re.search(r'property "([^"]+)"', error) or re.search(r"property: \"?([\w.]+)", error)
    if named is None:
        return "check STREAMER_KAFKA_PROPERTIES / STREAMER_KAFKA_PROP_*"
    return f"check {property_origin(named.group(1))}"
