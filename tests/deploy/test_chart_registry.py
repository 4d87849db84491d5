"""The chart's schema registry values: the URL in the ConfigMap, the basic-auth credentials
only from a Secret, and the pod's environment a valid registry client configuration."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamer.config.loader import load_settings
from streamer.config.registry import registry_client_config
from tests.deploy.tools import config_data, render, render_error, the_container

URL = "https://registry.schemas:8081/apis/ccompat/v7"
CONFLUENT = (
    "settings.input_format=confluent",
    "settings.output_format=confluent",
    "settings.schema_registry_auto_register=false",
    "settings.schema_registry_subject_strategy=topic_record",
    "settings.schema_registry_properties.ssl\\.ca\\.location=/etc/registry/ca.pem",
)


def _pod_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    env = dict(config_data(docs))
    for item in the_container(docs)["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = f"user-from-{ref['name']}:pw-from-{ref['key']}"
    return env


def test_registry_url_and_secret_credentials_make_a_client_config(
    helm: str, clean_env: pytest.MonkeyPatch
) -> None:
    docs = render(
        helm,
        f"schemaRegistry.url={URL}",
        "schemaRegistry.existingSecret=registry-auth",
        *CONFLUENT,
    )
    env = {e["name"]: e for e in the_container(docs)["env"]}
    ref = env["STREAMER_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "registry-auth", "key": "user-info"}
    config = config_data(docs)
    assert config["STREAMER_SCHEMA_REGISTRY_URL"] == URL
    assert "USER_INFO" not in json.dumps(config).upper()
    assert not [d for d in docs if d["kind"] == "Secret"]

    for name, value in _pod_env(docs).items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert settings.registry.auto_register is False
    assert settings.registry.subject_strategy == "topic_record"
    assert registry_client_config(settings.registry, settings.kafka.properties) == {
        "url": URL,
        "ssl.ca.location": "/etc/registry/ca.pem",
        "basic.auth.user.info": "user-from-registry-auth:pw-from-user-info",
    }


def test_no_registry_values_render_nothing_of_it(default_docs: list[dict[str, Any]]) -> None:
    assert "STREAMER_SCHEMA_REGISTRY_URL" not in config_data(default_docs)
    names = {e["name"] for e in the_container(default_docs)["env"]}
    assert "STREAMER_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" not in names


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ((f"schemaRegistry.url={URL}", f"settings.schema_registry_url={URL}"), "both set"),
        (("schemaRegistry.url=https://svc:hunter2@registry:8081",), "holds a password"),
        (("schemaRegistry.existingSecret=registry-auth",), "no registry URL"),
        (
            (
                f"schemaRegistry.url={URL}",
                "settings.schema_registry_basic_auth_user_info=u:hunter2",
            ),
            "schemaRegistry.existingSecret",
        ),
        (("schemaRegistry.url=registry:8081",), "schemaRegistry"),
    ],
)
def test_registry_values_that_cannot_work_fail_the_render(
    helm: str, sets: tuple[str, ...], message: str
) -> None:
    error = render_error(helm, *sets)
    assert message in error
    assert "hunter2" not in error
