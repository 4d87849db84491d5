"""The schema registry client's configuration, from the properties Java users write.

``STREAMER_SCHEMA_REGISTRY_PROPERTIES`` takes the names of Confluent's serializer
configuration. confluent-kafka's Python ``SchemaRegistryClient`` accepts most of them
(``basic.auth.user.info``, ``ssl.ca.location``, ``ssl.certificate.location``,
``ssl.key.location``, ``timeout``…) but not ``basic.auth.credentials.source``, and
it wants numbers where the environment gives strings. This module bridges both, in one
place, and turns the serializer options that are settings here into an error naming the
setting (one way to say each thing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamer.config.sections import RegistrySettings
from streamer.errors import ConfigError

PROPERTIES = "STREAMER_SCHEMA_REGISTRY_PROPERTIES"
_NUMERIC = frozenset(
    {
        "timeout",
        "cache.capacity",
        "cache.latest.ttl.sec",
        "max.retries",
        "retries.wait.ms",
        "retries.max.wait.ms",
    }
)
_SETTINGS_INSTEAD = {
    "auto.register.schemas": "STREAMER_SCHEMA_REGISTRY_AUTO_REGISTER",
    "use.latest.version": "STREAMER_SCHEMA_REGISTRY_USE_LATEST",
    "value.subject.name.strategy": "STREAMER_SCHEMA_REGISTRY_SUBJECT_STRATEGY",
    "subject.name.strategy": "STREAMER_SCHEMA_REGISTRY_SUBJECT_STRATEGY",
}
_SOURCES = ("USER_INFO", "URL", "SASL_INHERIT")


def registry_client_config(
    registry: RegistrySettings, kafka_properties: Mapping[str, str]
) -> dict[str, Any]:
    """The ``SchemaRegistryClient`` configuration; ``ConfigError`` names what to change.

    ``STREAMER_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`` (a Secret on Kubernetes) is
    ``basic.auth.user.info``. ``basic.auth.credentials.source``: ``USER_INFO``
    (``basic.auth.user.info``), ``URL``
    (``https://user:password@host``) or ``SASL_INHERIT`` (Kafka's ``sasl.username`` and
    ``sasl.password``), as with Confluent's Java serializers.
    """
    props: dict[str, Any] = dict(registry.properties)
    for name, setting in _SETTINGS_INSTEAD.items():
        if name in props:
            raise ConfigError(f"{PROPERTIES}: {name} is a setting here; use {setting}")
    if registry.user_info is not None:
        if "basic.auth.user.info" in props:
            raise ConfigError(
                f"basic.auth.user.info is set twice ({PROPERTIES} and "
                "STREAMER_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO): keep one"
            )
        props["basic.auth.user.info"] = registry.user_info.get_secret_value()
    for name in _NUMERIC & props.keys():
        props[name] = _number(name, props[name])
    source = str(props.pop("basic.auth.credentials.source", "")).upper()
    if source == "URL":
        props.pop("basic.auth.user.info", None)  # Java ignores it too with this source
    elif source == "SASL_INHERIT":
        props["basic.auth.user.info"] = _sasl_user_info(kafka_properties)
    elif source not in ("", "USER_INFO"):
        raise ConfigError(
            f"{PROPERTIES}: basic.auth.credentials.source {source!r} is not supported; "
            f"use one of {', '.join(_SOURCES)}"
        )
    elif source == "USER_INFO" and not props.get("basic.auth.user.info"):
        raise ConfigError(
            f"{PROPERTIES}: basic.auth.credentials.source is USER_INFO but "
            "basic.auth.user.info (user:password) is not set"
        )
    return {"url": registry.url, **props}


def _number(name: str, value: Any) -> int | float:
    if isinstance(value, int | float):
        return value
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{PROPERTIES}: {name} must be a number, got {value!r}") from None
    return int(number) if number.is_integer() else number


def _sasl_user_info(kafka_properties: Mapping[str, str]) -> str:
    user, password = kafka_properties.get("sasl.username"), kafka_properties.get("sasl.password")
    if not user or not password:
        raise ConfigError(
            f"{PROPERTIES}: basic.auth.credentials.source is SASL_INHERIT but the Kafka "
            "settings have no sasl.username and sasl.password"
        )
    return f"{user}:{password}"
