"""Settings: ``STREAMER_`` environment variables, an optional YAML file, validated once.

Precedence, highest first: keyword overrides (the CLI), environment variables, the YAML
file given with ``--config``, defaults. Any librdkafka property passes through, either in
``kafka_properties`` (YAML or a JSON environment value) or as ``STREAMER_KAFKA_PROP_<NAME>``
where ``<NAME>`` is the property with dots written as underscores, e.g.
``STREAMER_KAFKA_PROP_SASL_MECHANISM=SCRAM-SHA-512``.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from streamer.errors import ConfigError

WireFormat = Literal["confluent", "single-object", "raw"]
ENV_PREFIX = "STREAMER_"
KAFKA_PROP_PREFIX = "STREAMER_KAFKA_PROP_"
_SECRET_WORDS = ("password", "secret", "token", "sasl.jaas", "key.pem", "credentials", "user.info")


class Settings(BaseSettings):
    """Everything ``streamer run`` needs; each field is the env var ``STREAMER_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    # Kafka
    kafka_bootstrap_servers: str = Field(min_length=1, description="host:port[,host:port]")
    input_topic: str = Field(min_length=1)
    output_topic: str = Field(min_length=1)
    dlq_topic: str = Field("", description="dead-letter topic; default <input_topic>.dlq")
    group_id: str = Field("streamer", min_length=1)
    kafka_properties: dict[str, str] = Field(
        default_factory=dict, description="librdkafka properties for consumer and producer"
    )
    consumer_properties: dict[str, str] = Field(default_factory=dict)
    producer_properties: dict[str, str] = Field(default_factory=dict)
    processing_guarantee: Literal["at-least-once", "exactly-once"] = "at-least-once"
    transactional_id: str = Field("", description="exactly-once; default streamer-<group>-<host>")

    # Wire formats
    input_format: WireFormat = "single-object"
    output_format: WireFormat = "single-object"
    input_writer_schema: Path | None = Field(None, description="writer schema for raw input")
    schema_registry_url: str = ""
    schema_registry_properties: dict[str, str] = Field(default_factory=dict)
    max_message_bytes: int = Field(1_000_000, gt=0)

    # Redis feature cache
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_password: SecretStr | None = None
    redis_key_prefix: str = ""
    redis_timeout_ms: float = Field(100.0, gt=0, description="socket timeout per round trip")
    redis_breaker_failures: int = Field(3, ge=1)
    redis_breaker_cooldown_s: float = Field(5.0, gt=0)
    redis_ssl_ca_certs: Path | None = None

    # Model
    model: str = Field("fraud-gbt", min_length=1, description="path, name or name@version")
    models_dir: Path = Path("models")
    onnx_threads: int = Field(1, ge=1, le=64)

    # Batching
    max_batch_size: int = Field(500, ge=1, le=100_000)
    max_wait_ms: int = Field(10, ge=0, le=60_000)
    max_in_flight: int = Field(20_000, ge=1, description="unacknowledged outputs before pausing")

    # Operations
    metrics_port: int = Field(9464, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    drain_timeout_s: float = Field(30.0, gt=0)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> Settings:
        if self.input_topic == self.output_topic:
            raise ValueError("STREAMER_INPUT_TOPIC and STREAMER_OUTPUT_TOPIC must differ")
        uses_registry = "confluent" in (self.input_format, self.output_format)
        if uses_registry and not self.schema_registry_url:
            raise ValueError(
                "STREAMER_SCHEMA_REGISTRY_URL is required when STREAMER_INPUT_FORMAT or "
                "STREAMER_OUTPUT_FORMAT is confluent"
            )
        return self

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.input_topic}.dlq"

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly-once"

    def effective_transactional_id(self) -> str:
        """Unique per instance (the pod name on Kubernetes), stable across its restarts."""
        return self.transactional_id or f"streamer-{self.group_id}-{socket.gethostname()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file (if any) comes from model_config, set by ``load_settings``.
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls)

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict fit for logs: secrets and credentials replaced by ``***``."""
        data = self.model_dump(mode="json")
        data["redis_url"] = redact_url(self.redis_url.get_secret_value())
        data["redis_password"] = "***" if self.redis_password else None
        for key in (
            "kafka_properties",
            "consumer_properties",
            "producer_properties",
            "schema_registry_properties",
        ):
            data[key] = redact_properties(data[key])
        data["schema_registry_url"] = redact_url(self.schema_registry_url)
        return data


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact_properties(props: dict[str, str]) -> dict[str, str]:
    return {k: ("***" if is_secret(k) else v) for k, v in props.items()}


def redact_url(url: str) -> str:
    """``redis://user:pass@host`` → ``redis://user:***@host``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user}:***@{host}"


def _kafka_props_from_env(environ: dict[str, str]) -> dict[str, str]:
    return {
        name[len(KAFKA_PROP_PREFIX) :].lower().replace("_", "."): value
        for name, value in environ.items()
        if name.startswith(KAFKA_PROP_PREFIX) and len(name) > len(KAFKA_PROP_PREFIX)
    }


def client_properties(environ: dict[str, str] | None = None) -> dict[str, str]:
    """librdkafka properties for the operator commands (produce, consume, dlq): the same
    ``STREAMER_KAFKA_PROPERTIES`` (JSON) and ``STREAMER_KAFKA_PROP_<NAME>`` as ``run`` uses,
    so they reach a TLS/SASL cluster too."""
    env = dict(os.environ) if environ is None else environ
    raw = env.get("STREAMER_KAFKA_PROPERTIES", "")
    try:
        props = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"STREAMER_KAFKA_PROPERTIES is not a JSON object: {exc}") from None
    if not isinstance(props, dict):
        raise ConfigError("STREAMER_KAFKA_PROPERTIES is not a JSON object")
    return {**{str(k): str(v) for k, v in props.items()}, **_kafka_props_from_env(env)}


def env_name(loc: tuple[str | int, ...]) -> str:
    """The environment variable for a validation error location."""
    return ENV_PREFIX + "__".join(str(part) for part in loc).upper()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the settings; a problem raises ``ConfigError`` naming the setting."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"--config {config_file}: no such file")
    props = _kafka_props_from_env(dict(os.environ))
    cls = Settings
    if config_file is not None:

        class FileSettings(Settings):
            model_config = SettingsConfigDict(yaml_file=config_file)

        cls = FileSettings
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed YAML
        raise ConfigError(f"--config {config_file}: {exc}") from None
    if props:
        merged = {**settings.kafka_properties, **props}
        settings = settings.model_copy(update={"kafka_properties": merged})
    return settings


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required but not set"
        loc = tuple(error["loc"])
        problems.append(f"{env_name(loc)} {message}" if loc else message)
    return "invalid configuration: " + "; ".join(problems)
