"""Settings: one typed model that every command reads.

The fields are the user-facing surface: each is the environment variable
``STREAMER_<FIELD>``, the YAML key ``<field>`` and the chart's ``settings.<field>``. Code
reads them by concern through the sections (``settings.kafka``, ``settings.redis``,
``settings.registry``, ``settings.models``, ``settings.topics``; see ``config.sections``).
Loading, precedence and error messages live in ``config.loader``.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from streamer.config.redaction import MASK, redact_properties, redact_url
from streamer.config.sections import (
    KafkaSettings,
    ModelSettings,
    RedisSettings,
    RegistrySettings,
    SubjectStrategy,
    TopicSettings,
)

WireFormat = Literal["confluent", "single-object", "raw"]
ENV_PREFIX = "STREAMER_"


class Settings(BaseSettings):
    """Every setting of every command; each field is the env var ``STREAMER_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    # Kafka
    kafka_bootstrap_servers: str = Field("", description="Kafka brokers: host:port[,host:port]")
    input_topic: str = Field(
        "", description="topic of the transaction events the stream reads (required by run)"
    )
    output_topic: str = Field(
        "", description="topic the scored events are written to (required by run)"
    )
    dlq_topic: str = Field("", description="dead-letter topic; default <input_topic>.dlq")
    dlq_give_up_s: float = Field(
        60.0,
        gt=0,
        description="the stream exits 4 when the dead-letter topic refuses even a 1 KB letter "
        "this long with nothing acknowledged meanwhile",
    )
    labels_topic: str = Field(
        "transactions.labels",
        description="fraud labels (FraudLabel, framed as STREAMER_INPUT_FORMAT) for the monitor",
    )
    label_horizon_days: float = Field(
        120.0, gt=0, description="the monitor keeps scored events and labels this long in Redis"
    )
    monitor_group_id: str = Field(
        "streamer-monitor", min_length=1, description="consumer group of streamer monitor"
    )
    group_id: str = Field(
        "streamer",
        min_length=1,
        description="consumer group shared by every instance of the stream",
    )
    group_instance_id: str = Field(
        "auto",
        description="static group membership id: auto (the host name; the chart sets the pod"
        " name), or empty for dynamic membership; unique per instance (bench/failover.py)",
    )
    kafka_properties: dict[str, str] = Field(
        default_factory=dict, description="librdkafka properties for consumer and producer"
    )
    consumer_properties: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka properties for the consumer only, e.g. session.timeout.ms",
    )
    producer_properties: dict[str, str] = Field(
        default_factory=dict,
        description="librdkafka properties for the producer only, e.g. linger.ms",
    )
    processing_guarantee: Literal["at-least-once", "exactly-once"] = Field(
        "at-least-once",
        description="at-least-once, or exactly-once through Kafka transactions that span"
        " micro-batches (STREAMER_TRANSACTION_MAX_MS, STREAMER_TRANSACTION_MAX_BATCHES)",
    )
    transactional_id: str = Field("", description="exactly-once; default streamer-<group>-<host>")
    # 250 ms: a commit's fixed cost (~30 ms of round trips and flush on this 2-core host)
    # stays near a tenth of the time; docs/design.md (delivery guarantees) has the trade.
    transaction_max_ms: int = Field(
        250,
        ge=1,
        le=10_000,
        description="exactly-once: a transaction commits once open this long, input or not;"
        " its outputs are visible to read_committed consumers only then",
    )
    transaction_max_batches: int = Field(
        100,
        ge=1,
        le=100_000,
        description="exactly-once: a transaction commits after this many micro-batches"
        " (1: one per batch)",
    )

    # Wire formats
    input_format: WireFormat = Field(
        "single-object",
        description="wire format of the input: single-object, confluent (registry) or raw Avro",
    )
    output_format: WireFormat = Field(
        "single-object",
        description="wire format of the scored events: single-object, confluent or raw Avro",
    )
    input_writer_schema: Path | None = Field(None, description="writer schema for raw input")
    schema_registry_url: str = Field(
        "",
        description="schema registry URL, without credentials; required for the confluent format",
    )
    schema_registry_properties: dict[str, str] = Field(
        default_factory=dict,
        description="registry client properties: basic.auth.*, ssl.ca.location, ssl.*.location",
    )
    schema_registry_basic_auth_user_info: SecretStr | None = Field(
        None, description="user:password for the registry's basic auth (from a Secret)"
    )
    schema_registry_auto_register: bool = Field(
        True, description="register the output schema; off: it must be registered already"
    )
    schema_registry_use_latest: bool = Field(
        False, description="write with the subject's latest registered version"
    )
    schema_registry_subject_strategy: SubjectStrategy = Field(
        "topic", description="subject: <topic>-value, <record name>, or <topic>-<record name>"
    )
    schema_registry_unknown_id_ttl_s: float = Field(
        1.0, ge=0, description="an unknown schema id is dead-lettered without asking again"
    )
    max_message_bytes: int = Field(
        1_000_000, gt=0, description="a larger input message is dead-lettered (Oversized)"
    )

    # Redis feature cache
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL of the feature cache: redis://, rediss:// (TLS) or unix://",
    )
    redis_password: SecretStr | None = Field(
        None, description="Redis password (AUTH); from a Secret on Kubernetes"
    )
    redis_username: str | None = Field(
        None, description="Redis ACL user name; none: the default user"
    )
    redis_key_prefix: str = Field("", description="prefix of every feature key in Redis")
    redis_timeout_ms: float = Field(100.0, gt=0, description="socket timeout per round trip")
    redis_breaker_failures: int = Field(
        3, ge=1, description="consecutive failed round trips that open the circuit breaker"
    )
    redis_breaker_cooldown_s: float = Field(
        0.25, gt=0, description="while the breaker is open, Redis is probed this often"
    )
    redis_budget_ms: float = Field(
        250.0, gt=0, description="a timed-out round trip is retried once within this budget"
    )
    redis_ssl_ca_certs: Path | None = Field(
        None, description="CA bundle that verifies the Redis server's certificate (rediss://)"
    )
    redis_ssl_certfile: Path | None = Field(
        None, description="client certificate for Redis mutual TLS"
    )
    redis_ssl_keyfile: Path | None = Field(
        None, description="private key of the Redis client certificate"
    )
    redis_required: bool = Field(False, description="pause consumption while Redis is down")
    redis_mode: Literal["single", "cluster", "sentinel"] = Field(
        "single",
        description="single: one node at STREAMER_REDIS_URL; cluster: a Redis Cluster found"
        " through that node; sentinel: the primary STREAMER_REDIS_SENTINELS name",
    )
    redis_sentinels: str = Field(
        "", description="Sentinels as host:port,host:port (STREAMER_REDIS_MODE=sentinel)"
    )
    redis_sentinel_service: str = Field(
        "mymaster", description="the Sentinels' name of the primary (its service name)"
    )

    # Velocity state and feature logging
    velocity_state: bool = Field(
        True,
        description="velocity features from per-card state the stream keeps in Redis (false:"
        " the loaded snapshot's frozen values)",
    )
    velocity_ttl_days: int = Field(
        32,
        ge=2,
        le=400,
        description="a card's velocity state expires this long after its last write",
    )
    feature_logging: bool = Field(
        False, description="add the model's input vector (features) to every ScoredEvent"
    )
    reasons: Literal["flagged", "all", "off"] = Field(
        "flagged",
        description="reason codes (docs/reasons.md) on REVIEW and DECLINE decisions (flagged),"
        " on every decision (all) or on none (off)",
    )
    reasons_deny: str = Field(
        "",
        description="model inputs that may never be a reason, comma-separated (e.g."
        " hour_of_day,day_of_week): their contributions are dropped before codes are ranked",
    )

    # Model
    model: str = Field(
        "fraud-gbt@champion", min_length=1, description="path, name, name@version or name@alias"
    )
    shadow_model: str = Field("", description="scored beside the model, never deciding")
    models_dir: Path = Field(
        Path("models"),
        description="directory of the file model registry: <name>/<version>/ folders",
    )
    model_watch_interval_s: float = Field(
        5.0, ge=0, description="how often the model specs are checked for a new version; 0: off"
    )
    drift_window_s: float = Field(600.0, gt=0, description="drift PSI over this window")
    onnx_threads: int = Field(
        1, ge=1, le=64, description="ONNX Runtime intra-op threads; scale with processes instead"
    )

    # Batching
    max_batch_size: int = Field(
        500, ge=1, le=100_000, description="most messages in one micro-batch"
    )
    max_wait_ms: int = Field(
        0,
        ge=0,
        le=60_000,
        description="longest wait for a micro-batch to fill, in ms; 0: adaptive, a batch is "
        "what is waiting (one event when traffic is light, max_batch_size in a backlog), "
        "scored at once",
    )
    max_in_flight: int = Field(20_000, ge=1, description="unacknowledged outputs before pausing")
    latency_target_ms: float = Field(
        0.0,
        ge=0,
        description="cap batches for this p99: smaller batches and fill waits (0: no cap)",
    )

    # Processes
    workers: int = Field(
        1, ge=1, le=256, description="stream processes in one group, supervised by one command"
    )

    # Operations
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="port of /metrics, /healthz and /readyz; 0: off"
    )
    metrics_host: str = Field(
        "0.0.0.0",
        min_length=1,
        description="address the /metrics, /healthz and /readyz server binds (IPv4): 0.0.0.0 "
        "(every interface) so probes and scrapes reach a container; 127.0.0.1 on a shared host",
    )
    serve_grpc_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="port of streamer serve's gRPC Open Inference Protocol "
        "(inference.GRPCInferenceService), on serve's --host; 0: off",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="log level of streamer and librdkafka"
    )
    log_format: Literal["json", "console"] = Field(
        "json", description="json (one object per line) or console (for a person at a terminal)"
    )
    progress_interval_s: float = Field(30.0, ge=0, description="INFO progress line; 0: off")
    drain_timeout_s: float = Field(
        30.0,
        gt=0,
        description="how long a stop or a rebalance waits for outputs to be acknowledged",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> Settings:
        if self.input_topic and self.input_topic == self.output_topic:
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
        """The effective settings as a dict fit for logs: secrets replaced by ``***``."""
        data = self.model_dump(mode="json")
        data["redis_url"] = redact_url(self.redis_url.get_secret_value())
        data["redis_password"] = MASK if self.redis_password else None
        data["schema_registry_basic_auth_user_info"] = (
            MASK if self.schema_registry_basic_auth_user_info else None
        )
        for key in (
            "kafka_properties",
            "consumer_properties",
            "producer_properties",
            "schema_registry_properties",
        ):
            data[key] = redact_properties(data[key])
        data["schema_registry_url"] = redact_url(self.schema_registry_url)
        data["dlq_topic"] = self.dead_letter_topic
        data["group_instance_id"] = self.kafka.group_instance_id
        data["transactional_id"] = self.kafka.transactional_id
        return data

    def require(self, *fields: str) -> None:
        """Raise ``ValueError`` naming every one of ``fields`` that is empty (for a command)."""
        missing = [f"{ENV_PREFIX}{f.upper()}" for f in fields if not getattr(self, f)]
        if missing:
            raise ValueError("; ".join(f"{name} is required but not set" for name in missing))

    # -- sections ---------------------------------------------------------------------------

    @property
    def kafka(self) -> KafkaSettings:
        instance = self.group_instance_id
        return KafkaSettings(
            bootstrap_servers=self.kafka_bootstrap_servers,
            group_id=self.group_id,
            group_instance_id=socket.gethostname() if instance == "auto" else instance,
            properties=dict(self.kafka_properties),
            consumer_properties=dict(self.consumer_properties),
            producer_properties=dict(self.producer_properties),
            transactional_id=self.effective_transactional_id() if self.exactly_once else "",
        )

    @property
    def redis(self) -> RedisSettings:
        return RedisSettings(
            url=self.redis_url,
            password=self.redis_password,
            username=self.redis_username,
            budget_ms=self.redis_budget_ms,
            key_prefix=self.redis_key_prefix,
            timeout_ms=self.redis_timeout_ms,
            breaker_failures=self.redis_breaker_failures,
            breaker_cooldown_s=self.redis_breaker_cooldown_s,
            ssl_ca_certs=self.redis_ssl_ca_certs,
            ssl_certfile=self.redis_ssl_certfile,
            ssl_keyfile=self.redis_ssl_keyfile,
            required=self.redis_required,
            mode=self.redis_mode,
            sentinels=self.redis_sentinels,
            sentinel_service=self.redis_sentinel_service,
        )

    @property
    def registry(self) -> RegistrySettings:
        return RegistrySettings(
            self.schema_registry_url,
            dict(self.schema_registry_properties),
            user_info=self.schema_registry_basic_auth_user_info,
            auto_register=self.schema_registry_auto_register,
            use_latest=self.schema_registry_use_latest,
            subject_strategy=self.schema_registry_subject_strategy,
            unknown_id_ttl_s=self.schema_registry_unknown_id_ttl_s,
        )

    @property
    def models(self) -> ModelSettings:
        return ModelSettings(
            self.model,
            self.models_dir,
            self.onnx_threads,
            self.shadow_model,
            self.model_watch_interval_s,
            self.drift_window_s,
        )

    @property
    def topics(self) -> TopicSettings:
        return TopicSettings(self.input_topic, self.output_topic, self.dead_letter_topic)
