"""Settings: environment, YAML, pass-through of librdkafka properties, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamer.clients import Clients
from streamer.config.loader import load_settings
from streamer.config.redaction import redact_url
from streamer.errors import ConfigError
from streamer.kafka.config import consumer_config, producer_config
from streamer.service.assembly import build

REQUIRED = {
    "STREAMER_KAFKA_BOOTSTRAP_SERVERS": "broker:9092",
    "STREAMER_INPUT_TOPIC": "transactions",
    "STREAMER_OUTPUT_TOPIC": "transactions.scored",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_environment_variables_configure_everything(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMER_GROUP_ID", "fraud")
    env.setenv("STREAMER_MAX_BATCH_SIZE", "256")
    env.setenv("STREAMER_INPUT_FORMAT", "raw")
    env.setenv("STREAMER_MODEL", "fraud-gbt@1")
    env.setenv("STREAMER_KAFKA_PROPERTIES", '{"security.protocol": "SASL_SSL"}')
    env.setenv("STREAMER_KAFKA_PROP_SASL_MECHANISM", "SCRAM-SHA-512")
    env.setenv("STREAMER_KAFKA_PROP_SASL_PASSWORD", "hunter2")

    s = load_settings()

    assert (s.group_id, s.max_batch_size, s.input_format, s.model) == (
        "fraud",
        256,
        "raw",
        "fraud-gbt@1",
    )
    assert s.dead_letter_topic == "transactions.dlq"
    assert s.kafka_properties == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.password": "hunter2",
    }
    consumer = consumer_config(s.kafka)
    assert consumer["security.protocol"] == "SASL_SSL"
    assert consumer["sasl.password"] == "hunter2"
    assert producer_config(s.kafka)["sasl.mechanism"] == "SCRAM-SHA-512"
    assert "hunter2" not in repr(s.redacted())


def test_yaml_file_below_environment(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "streamer.yaml"
    config.write_text(
        "group_id: from-yaml\nmax_wait_ms: 20\nconsumer_properties:\n  fetch.min.bytes: '1024'\n"
    )
    env.setenv("STREAMER_GROUP_ID", "from-env")

    s = load_settings(config)

    assert s.group_id == "from-env"
    assert s.max_wait_ms == 20
    assert consumer_config(s.kafka)["fetch.min.bytes"] == "1024"


def test_at_least_once_settings_cannot_be_overridden(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMER_CONSUMER_PROPERTIES", '{"enable.auto.commit": "true"}')
    env.setenv("STREAMER_PRODUCER_PROPERTIES", '{"delivery.report.only.error": "true"}')
    env.setenv("STREAMER_KAFKA_PROPERTIES", '{"enable.auto.offset.store": "true"}')
    kafka = load_settings().kafka
    assert consumer_config(kafka)["enable.auto.commit"] is False
    assert consumer_config(kafka)["enable.auto.offset.store"] is False
    # Other producers count success reports (the API's --publish, dlq replay, produce);
    # only the stream's own producer reads silence as success (``STREAM_PRODUCER``).
    assert producer_config(kafka)["delivery.report.only.error"] is False


def test_the_streams_own_producer_reports_failures_only(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMER_INPUT_FORMAT", "raw")
    env.setenv("STREAMER_MODELS_DIR", str(Path(__file__).resolve().parents[2] / "models"))
    made: list[dict[str, object]] = []

    class Recording(Clients):
        def producer(self, **overrides: object) -> Producer:
            made.append(overrides)
            return super().producer(**overrides)

    settings = load_settings()
    build(settings, clients=Recording(settings))
    assert made == [{"delivery.report.only.error": True}]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STREAMER_MAX_BATCH_SIZE", "0", "STREAMER_MAX_BATCH_SIZE"),
        ("STREAMER_MAX_BATCH_SIZE", "lots", "STREAMER_MAX_BATCH_SIZE"),
        ("STREAMER_INPUT_FORMAT", "json", "STREAMER_INPUT_FORMAT"),
        ("STREAMER_REDIS_URL", "http://cache", "STREAMER_REDIS_URL"),
        ("STREAMER_OUTPUT_TOPIC", "transactions", "must differ"),
        ("STREAMER_INPUT_FORMAT", "confluent", "STREAMER_SCHEMA_REGISTRY_URL"),
    ],
)
def test_bad_setting_names_the_setting(
    env: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    env.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_missing_required_settings_are_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in REQUIRED:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        load_settings(require=("kafka_bootstrap_servers", "input_topic", "output_topic"))
    for name in REQUIRED:
        assert f"{name} is required" in str(info.value)


def test_unknown_yaml_key_is_refused(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "streamer.yaml"
    config.write_text("max_batch_sise: 10\n")
    with pytest.raises(ConfigError, match="MAX_BATCH_SISE"):
        load_settings(config)


def test_secrets_are_redacted(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMER_REDIS_URL", "rediss://default:s3cret@cache:6380/0")
    env.setenv("STREAMER_REDIS_PASSWORD", "other-s3cret")
    s = load_settings()
    shown = repr(s.redacted()) + repr(s) + str(s)
    assert "s3cret" not in shown
    assert "rediss://default:***@cache:6380/0" in shown
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


def test_exactly_once_gets_a_transactional_producer_with_short_timeouts(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("STREAMER_PROCESSING_GUARANTEE", "exactly-once")
    env.setenv("STREAMER_TRANSACTIONAL_ID", "fraud-0")
    producer = producer_config(load_settings().kafka)
    assert producer["transactional.id"] == "fraud-0"
    assert int(producer["delivery.timeout.ms"]) <= int(producer["transaction.timeout.ms"]) <= 60_000
    env.delenv("STREAMER_PROCESSING_GUARANTEE")
    assert "transactional.id" not in producer_config(load_settings().kafka)


def test_operator_commands_get_the_same_kafka_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMER_KAFKA_BOOTSTRAP_SERVERS", "broker:9093")
    monkeypatch.setenv("STREAMER_KAFKA_PROPERTIES", '{"security.protocol": "SASL_SSL"}')
    monkeypatch.setenv("STREAMER_KAFKA_PROP_SASL_MECHANISM", "PLAIN")
    kafka = load_settings().kafka  # no topics needed for produce/consume/dlq
    assert kafka.properties == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("STREAMER_MAX_BATCHSIZE", "STREAMER_MAX_BATCH_SIZE"),
        ("STREAMER_REDIS_ULR", "STREAMER_REDIS_URL"),
        ("STREAMER_BANANA", None),
    ],
)
def test_an_unknown_variable_stops_start_up_naming_it(
    env: pytest.MonkeyPatch, name: str, suggestion: str | None
) -> None:
    env.setenv(name, "1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"{name} is not a setting" in str(info.value)
    if suggestion:
        assert f"did you mean {suggestion}?" in str(info.value)


def test_an_unknown_yaml_key_gets_a_suggestion(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "streamer.yaml"
    config.write_text("max_batch_sise: 10\n")
    with pytest.raises(ConfigError, match="did you mean STREAMER_MAX_BATCH_SIZE"):
        load_settings(config)


def test_bad_json_names_the_variable(env: pytest.MonkeyPatch) -> None:
    env.setenv("STREAMER_KAFKA_PROPERTIES", "{not json")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("STREAMER_KAFKA_PROPERTIES is not valid JSON")
    assert "--config" not in message


@pytest.mark.parametrize(
    "prop",
    [
        "sasl.password",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "sasl.jaas.config",
        "basic.auth.user.info",
        "bearer.auth.token",
    ],
)
def test_every_sensitive_property_is_redacted(env: pytest.MonkeyPatch, prop: str) -> None:
    env.setenv("STREAMER_KAFKA_PROPERTIES", f'{{"{prop}": "clientSecret=hunter2"}}')
    env.setenv("STREAMER_SCHEMA_REGISTRY_PROPERTIES", f'{{"{prop}": "hunter3"}}')
    shown = repr(load_settings().redacted())
    assert "hunter2" not in shown
    assert "hunter3" not in shown


def test_the_images_schemas_dir_is_not_refused_as_an_unknown_setting(
    env: pytest.MonkeyPatch,
) -> None:
    """The Dockerfile sets STREAMER_SCHEMAS_DIR for the codec; start-up must accept it."""
    env.setenv("STREAMER_SCHEMAS_DIR", "/app/schemas")
    assert load_settings().max_batch_size > 0
