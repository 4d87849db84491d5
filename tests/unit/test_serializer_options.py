"""The Confluent serializer options and the registry client's configuration, without servers.

The same promises are tested against a real registry in
``tests/integration/test_registry_options.py``; here the edges: every strategy's name, a
latest version that cannot hold our records, every credentials source.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import replace
from io import BytesIO
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import parse_schema, schemaless_reader

from streamer.codec import schemas as avro
from streamer.codec.confluent import RegistryEncoder, SerializerOptions, subject_name
from streamer.config.registry import registry_client_config
from streamer.config.sections import RegistrySettings
from streamer.errors import ConfigError, DependencyError
from tests.fixtures.events import ONLINE

SCHEMA = avro.transaction_schema()
FULL_NAME = "io.streamer.fraud.TransactionEvent"


@pytest.fixture
def client() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})


def _register(client: SchemaRegistryClient, subject: str, schema: dict[str, Any]) -> int:
    text = json.dumps(schema, separators=(",", ":"))  # as we register it (the mock compares text)
    return int(client.register_schema(subject, RegistrySchema(text, "AVRO")))


def _ours() -> dict[str, Any]:
    return json.loads(avro.schema_json(SCHEMA))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        ("topic", "payments-value"),
        ("record", FULL_NAME),
        ("topic_record", f"payments-{FULL_NAME}"),
    ],
)
def test_subject_name_strategies(strategy: Any, subject: str) -> None:
    assert subject_name(strategy, "payments", SCHEMA) == subject


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="subject name strategy"):
        subject_name("topic_value", "payments", SCHEMA)  # type: ignore[arg-type]


def test_auto_register_off_refuses_a_missing_schema_naming_the_subject(
    client: SchemaRegistryClient,
) -> None:
    _register(client, "other-value", _ours())  # the right schema under another subject
    enc = RegistryEncoder(SCHEMA, client, "payments-value", SerializerOptions(auto_register=False))
    with pytest.raises(
        DependencyError,
        match=f"{FULL_NAME} is not registered under subject 'payments-value'.*AUTO_REGISTER",
    ):
        enc.prepare()
    assert client.get_subjects() == ["other-value"]  # nothing was registered


def test_auto_register_off_uses_the_registered_id(client: SchemaRegistryClient) -> None:
    _register(client, "noise-value", {"type": "record", "name": "Noise", "fields": []})
    schema_id = _register(client, "payments-value", _ours())
    enc = RegistryEncoder(SCHEMA, client, "payments-value", SerializerOptions(auto_register=False))
    assert enc.encode(ONLINE)[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    assert client.get_versions("payments-value") == [1]


def test_use_latest_writes_with_a_newer_version_filling_its_defaults(
    client: SchemaRegistryClient,
) -> None:
    _register(client, "payments-value", _ours())
    newer = _ours()
    newer["fields"].append({"name": "queue", "type": ["null", "string"], "default": None})
    newer["fields"].append({"name": "tier", "type": "int", "default": 3})
    newer["fields"] = [f for f in newer["fields"] if f["name"] != "is_recurring"]  # dropped
    latest_id = _register(client, "payments-value", newer)
    options = SerializerOptions(auto_register=True, use_latest=True)
    enc = RegistryEncoder(SCHEMA, client, "payments-value", options)

    payload = enc.encode(ONLINE)
    assert payload[:5] == b"\x00" + latest_id.to_bytes(4, "big")
    decoded = schemaless_reader(BytesIO(payload[5:]), parse_schema(newer), None)
    assert isinstance(decoded, dict)
    assert decoded["queue"] is None
    assert decoded["tier"] == 3
    assert decoded["transaction_id"] == ONLINE["transaction_id"]
    assert "is_recurring" not in decoded
    assert sorted(client.get_versions("payments-value")) == [1, 2]  # use-latest registers nothing


@pytest.mark.parametrize("call", ["encode", "encode_many", "encode_columns"])
def test_use_latest_first_use_writes_the_latest_version_by_every_call(
    client: SchemaRegistryClient, call: str
) -> None:
    """The latest version is found on first use and brings its own encoder: the first
    payload, whichever call makes it, must already be written with that version."""
    _register(client, "payments-value", _ours())
    newer = _ours()
    newer["fields"].append({"name": "tier", "type": "int", "default": 3})
    latest_id = _register(client, "payments-value", newer)
    enc = RegistryEncoder(SCHEMA, client, "payments-value", SerializerOptions(use_latest=True))
    columns = {name: [value] for name, value in ONLINE.items()}
    payload = {
        "encode": lambda: enc.encode(ONLINE),
        "encode_many": lambda: enc.encode_many([ONLINE])[0],
        "encode_columns": lambda: enc.encode_columns(columns, 1)[0],
    }[call]()
    assert payload[:5] == b"\x00" + latest_id.to_bytes(4, "big")
    decoded = schemaless_reader(BytesIO(payload[5:]), parse_schema(newer), None)
    assert isinstance(decoded, dict)
    assert decoded["tier"] == 3
    assert decoded["transaction_id"] == ONLINE["transaction_id"]


def test_use_latest_with_our_own_schema_latest_uses_its_id(client: SchemaRegistryClient) -> None:
    first = _register(client, "payments-value", _ours())
    enc = RegistryEncoder(SCHEMA, client, "payments-value", SerializerOptions(use_latest=True))
    assert enc.encode_many([ONLINE, ONLINE])[1][:5] == b"\x00" + first.to_bytes(4, "big")


def test_use_latest_refuses_a_version_that_cannot_hold_our_records(
    client: SchemaRegistryClient,
) -> None:
    other = _ours()
    other["fields"].append({"name": "required_new", "type": "string"})  # no default
    _register(client, "payments-value", other)
    enc = RegistryEncoder(SCHEMA, client, "payments-value", SerializerOptions(use_latest=True))
    with pytest.raises(DependencyError, match="latest version \\(1\\) of subject 'payments-value'"):
        enc.prepare()


def test_use_latest_on_an_empty_subject_names_it(client: SchemaRegistryClient) -> None:
    enc = RegistryEncoder(SCHEMA, client, "payments-value", SerializerOptions(use_latest=True))
    with pytest.raises(DependencyError, match="'payments-value' has no registered version"):
        enc.encode(ONLINE)


def _config(props: dict[str, str], kafka: dict[str, str] | None = None) -> dict[str, Any]:
    return registry_client_config(RegistrySettings("https://sr:8081", props), kafka or {})


@pytest.mark.parametrize(
    ("props", "kafka", "expected"),
    [
        ({}, {}, {}),
        (
            {"basic.auth.credentials.source": "USER_INFO", "basic.auth.user.info": "u:p"},
            {},
            {"basic.auth.user.info": "u:p"},
        ),
        (
            {"basic.auth.credentials.source": "sasl_inherit"},
            {"sasl.username": "svc", "sasl.password": "pw"},
            {"basic.auth.user.info": "svc:pw"},
        ),
        ({"basic.auth.credentials.source": "URL", "basic.auth.user.info": "u:p"}, {}, {}),
        (
            {"timeout": "5", "retries.wait.ms": "250", "cache.latest.ttl.sec": "0.5"},
            {},
            {"timeout": 5, "retries.wait.ms": 250, "cache.latest.ttl.sec": 0.5},
        ),
        ({"ssl.ca.location": "/ca.pem"}, {}, {"ssl.ca.location": "/ca.pem"}),
    ],
)
def test_registry_client_config(
    props: dict[str, str], kafka: dict[str, str], expected: dict[str, Any]
) -> None:
    assert _config(props, kafka) == {"url": "https://sr:8081", **expected}


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"auto.register.schemas": "false"}, "STREAMER_SCHEMA_REGISTRY_AUTO_REGISTER"),
        ({"use.latest.version": "true"}, "STREAMER_SCHEMA_REGISTRY_USE_LATEST"),
        ({"subject.name.strategy": "x"}, "STREAMER_SCHEMA_REGISTRY_SUBJECT_STRATEGY"),
        ({"basic.auth.credentials.source": "SASL_INHERIT"}, "no sasl.username"),
        ({"basic.auth.credentials.source": "USER_INFO"}, "basic.auth.user.info"),
        ({"basic.auth.credentials.source": "KERBEROS"}, "USER_INFO, URL, SASL_INHERIT"),
        ({"timeout": "soon"}, "timeout must be a number"),
    ],
)
def test_registry_client_config_errors_name_the_property(
    props: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as excinfo:
        _config(props)
    assert "STREAMER_SCHEMA_REGISTRY_PROPERTIES" in str(excinfo.value)


def test_auto_register_off_finds_the_schema_registered_with_other_text(
    client: SchemaRegistryClient,
) -> None:
    """Registries match lookups by text; the same schema pretty-printed, with other docs, is
    still ours (same canonical form), and the newest such version wins."""
    pretty = _ours() | {"doc": "registered by the platform team"}
    text = json.dumps(pretty, indent=2)
    first = int(client.register_schema("payments-value", RegistrySchema(text, "AVRO")))
    enc = RegistryEncoder(SCHEMA, client, "payments-value", SerializerOptions(auto_register=False))
    assert enc.encode(ONLINE)[:5] == b"\x00" + first.to_bytes(4, "big")
    assert client.get_versions("payments-value") == [1]


def test_user_info_setting_is_basic_auth_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streamer.config.loader import load_settings

    for name in [n for n in os.environ if n.startswith("STREAMER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STREAMER_SCHEMA_REGISTRY_URL", "https://sr:8081")
    monkeypatch.setenv("STREAMER_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "svc:hunter2")
    settings = load_settings()
    config = registry_client_config(settings.registry, {})
    assert config["basic.auth.user.info"] == "svc:hunter2"
    assert "hunter2" not in json.dumps(settings.redacted())
    twice = settings.registry.properties | {"basic.auth.user.info": "a:b"}
    with pytest.raises(ConfigError, match="set twice") as excinfo:
        registry_client_config(replace(settings.registry, properties=twice), {})
    assert "hunter2" not in str(excinfo.value)
