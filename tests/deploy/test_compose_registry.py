"""docker-compose.yml: the streamers and the producer speak the Confluent framing through
the stack's own schema registry, and start only once it answers."""

from __future__ import annotations

from streamer.config.loader import load_settings
from tests.deploy.test_compose import compose_file

CLIENTS = ("streamer-1", "streamer-2", "producer")


def test_compose_has_a_registry_with_the_confluent_api() -> None:
    registry = compose_file()["services"]["schema-registry"]
    assert registry["image"].startswith("apicurio/apicurio-registry")
    assert "/apis/ccompat/v7/" in " ".join(registry["healthcheck"]["test"])
    (port,) = registry["ports"]
    assert port.endswith(":8080")


def test_compose_clients_use_the_confluent_framing_through_the_registry(
    clean_env: object,
) -> None:
    services = compose_file()["services"]
    for name in CLIENTS:
        env = services[name]["environment"]
        assert env["STREAMER_INPUT_FORMAT"] == "confluent", name
        assert env["STREAMER_SCHEMA_REGISTRY_URL"].startswith("http://schema-registry:8080/")
        assert env["STREAMER_SCHEMA_REGISTRY_URL"].endswith("/apis/ccompat/v7")
        assert services[name]["depends_on"]["schema-registry"] == {"condition": "service_healthy"}
        settings = load_settings(
            **{k[9:].lower(): v for k, v in env.items() if k.startswith("STREAMER_")}
        )
        assert settings.registry.url == env["STREAMER_SCHEMA_REGISTRY_URL"]
    for name in CLIENTS[:2]:
        assert services[name]["environment"]["STREAMER_OUTPUT_FORMAT"] == "confluent", name
