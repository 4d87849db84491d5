"""The chart never puts a secret in a ConfigMap and never accepts a setting it does not know.

A secret in plain values ends up in a ConfigMap that anyone with read access to the
namespace can print; a misspelled setting is silently ignored at run time. Both fail the
render, with a line that names the key and says what to do instead.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamer.config.settings import Settings
from tests.deploy.tools import (
    CHART,
    config_data,
    only,
    render,
    render_error,
    the_container,
)

# Settings the lead engineer is adding to streamer/config/settings.py; the chart knows them.
PENDING_SETTINGS = {
    "group_instance_id",
    "redis_required",
    "log_format",
    "shadow_model",
    "latency_target_ms",
}


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (("kafka.properties.sasl\\.password=hunter2",), "kafka.properties.sasl.password"),
        (("kafka.properties.sasl\\.jaas\\.config=x",), "kafka.properties.sasl.jaas.config"),
        (("kafka.properties.ssl\\.key\\.password=x",), "kafka.properties.ssl.key.password"),
        (("kafka.properties.ssl\\.keystore\\.password=x",), "ssl.keystore.password"),
        (("kafka.properties.sasl\\.oauthbearer\\.client\\.secret=x",), "client.secret"),
        (("kafka.properties.sasl\\.oauthbearer\\.config=clientSecret=x",), "oauthbearer.config"),
        (
            ("kafka.properties.sasl\\.oauthbearer\\.assertion\\.private\\.key\\.passphrase=x",),
            "assertion.private.key.passphrase",
        ),
        (("kafka.properties.SASL\\.PASSWORD=x",), "SASL.PASSWORD"),
        (
            ("settings.schema_registry_properties.basic\\.auth\\.user\\.info=u:p",),
            "settings.schema_registry_properties.basic.auth.user.info",
        ),
        (("settings.producer_properties.sasl\\.password=x",), "producer_properties.sasl.password"),
        (("settings.consumer_properties.api_token=x",), "consumer_properties.api_token"),
        (("extraEnv[0].name=MY_CREDENTIALS", "extraEnv[0].value=x"), "extraEnv MY_CREDENTIALS"),
    ],
)
def test_secret_looking_plain_values_fail_the_render(
    helm: str, sets: tuple[str, ...], key: str
) -> None:
    error = render_error(helm, *sets)
    assert key in error
    assert "looks like a secret" in error
    assert "secretEnv" in error
    assert "hunter2" not in error
    assert len([line for line in error.splitlines() if line.strip()]) <= 3


@pytest.mark.parametrize(
    ("sets", "where"),
    [
        (("redis.url=redis://:hunter2@redis:6379/0",), "redis.url"),
        (
            ("settings.schema_registry_url=https://user:hunter2@registry:8081",),
            "schema_registry_url",
        ),
    ],
)
def test_urls_with_passwords_fail_the_render(helm: str, sets: tuple[str, ...], where: str) -> None:
    error = render_error(helm, *sets)
    assert where in error
    assert "password" in error
    assert "hunter2" not in error


def test_non_secret_names_still_render(helm: str) -> None:
    docs = render(
        helm,
        "kafka.properties.ssl\\.ca\\.location=/etc/kafka/ca.pem",
        "kafka.properties.sasl\\.mechanism=PLAIN",
        "settings.schema_registry_url=https://registry:8081",
        "extraEnv[0].name=TZ",
        "extraEnv[0].value=UTC",
        "extraEnv[1].name=STREAMER_EXTRA_TOKEN",
        "extraEnv[1].valueFrom.secretKeyRef.name=s",
        "extraEnv[1].valueFrom.secretKeyRef.key=k",
    )
    assert json.loads(config_data(docs)["STREAMER_KAFKA_PROPERTIES"]) == {
        "ssl.ca.location": "/etc/kafka/ca.pem",
        "sasl.mechanism": "PLAIN",
    }


def test_secret_env_reads_existing_secrets(helm: str) -> None:
    name = "STREAMER_KAFKA_PROP_SASL_OAUTHBEARER_CLIENT_SECRET"
    docs = render(
        helm,
        f"secretEnv.{name}.secretName=kafka-oauth",
        f"secretEnv.{name}.key=client-secret",
    )
    env = {e["name"]: e for e in the_container(docs)["env"]}
    assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "kafka-oauth", "key": "client-secret"}
    assert "value" not in env[name]
    assert not [d for d in docs if d["kind"] == "Secret"]
    error = render_error(helm, f"secretEnv.{name}.secretName=kafka-oauth")
    assert "key" in error


def test_unknown_settings_fail_the_render_naming_the_key(helm: str) -> None:
    error = render_error(helm, "settings.max_batchsize=100")
    assert "'max_batchsize'" in error
    assert "not allowed" in error
    error = render_error(helm, "settings.redis_ulr=redis://r:6379/0")
    assert "'redis_ulr'" in error


def test_every_streamer_setting_is_known_to_the_chart(helm: str) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["settings"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(Settings.model_fields) | PENDING_SETTINGS
    for name in (
        "max_batch_size",
        "redis_timeout_ms",
        *sorted(PENDING_SETTINGS - {"group_instance_id"}),
    ):
        docs = render(helm, f"settings.{name}=1")
        assert config_data(docs)[f"STREAMER_{name.upper()}"] == "1"


def test_each_pod_joins_with_its_own_static_member_id(
    default_docs: list[dict[str, Any]], helm: str
) -> None:
    env = {e["name"]: e for e in the_container(default_docs)["env"]}
    assert env["STREAMER_GROUP_INSTANCE_ID"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }
    assert "STREAMER_GROUP_INSTANCE_ID" not in config_data(default_docs)
    # One id for every pod would fence them against each other: refused.
    error = render_error(helm, "settings.group_instance_id=streamer-1")
    assert "settings.group_instance_id" in error
    docs = render(helm, "kafka.staticMembership=false")
    env = {e["name"]: e for e in the_container(docs)["env"]}
    assert env["STREAMER_GROUP_INSTANCE_ID"] == {"name": "STREAMER_GROUP_INSTANCE_ID", "value": ""}
    assert only(docs, "Deployment")
