"""The settings the chart renders are streamer settings; secrets only referenced; NOTES."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from streamer.config.loader import load_settings
from streamer.config.settings import Settings
from streamer.kafka.config import consumer_config
from tests.deploy.tools import (
    CHART,
    config_data,
    is_setting,
    only,
    render,
    the_container,
)
from tests.fixtures import dashboard as dash


def test_secrets_are_only_referenced(keda_docs: list[dict[str, Any]]) -> None:
    assert not [d for d in keda_docs if d["kind"] == "Secret"]
    env = {e["name"]: e for e in the_container(keda_docs)["env"]}
    for name, secret, key in (
        ("STREAMER_KAFKA_PROP_SASL_USERNAME", "kafka-sasl", "username"),
        ("STREAMER_KAFKA_PROP_SASL_PASSWORD", "kafka-sasl", "password"),
        ("STREAMER_REDIS_PASSWORD", "redis-auth", "redis-password"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
    config = json.dumps(config_data(keda_docs)).lower()
    assert "password" not in config


def _pod_environment(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The container's environment as Kubernetes would build it (secrets stubbed)."""
    env = dict(config_data(docs))
    for item in the_container(docs)["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = f"secret-{item['valueFrom']['secretKeyRef']['key']}"
    return env


def test_rendered_environment_is_valid_streamer_settings(
    keda_docs: list[dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    env = _pod_environment(keda_docs)
    unknown = [n for n in env if n.startswith("STREAMER_") and not is_setting(n)]
    assert not unknown, f"not streamer settings (ignored at run time): {unknown}"
    for name, value in env.items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert (settings.input_topic, settings.output_topic) == ("transactions", "transactions.scored")
    assert settings.dead_letter_topic == "transactions.dlq"
    assert settings.group_id == "streamer"
    assert settings.kafka_properties == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "secret-username",
        "sasl.password": "secret-password",
    }
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "secret-redis-password"
    assert (settings.metrics_port, settings.drain_timeout_s) == (9464, 30.0)
    assert (settings.max_batch_size, settings.model) == (500, "fraud-gbt")
    # KEDA counts the lag of a new group the way the pods' consumer will start reading it.
    (trigger,) = only(keda_docs, "ScaledObject")["spec"]["triggers"]
    reset = consumer_config(settings.kafka)["auto.offset.reset"]
    assert trigger["metadata"]["offsetResetPolicy"] == reset


def test_settings_values_reach_the_config_map(helm: str, clean_env: pytest.MonkeyPatch) -> None:
    docs = render(
        helm,
        "settings.max_wait_ms=20",
        "settings.log_level=DEBUG",
        "settings.processing_guarantee=exactly-once",
        "kafka.properties.fetch\\.min\\.bytes=1024",
    )
    for name, value in _pod_environment(docs).items():
        clean_env.setenv(name, value)
    settings = load_settings()
    assert (settings.max_wait_ms, settings.log_level) == (20, "DEBUG")
    assert settings.processing_guarantee == "exactly-once"
    assert not settings.transactional_id, "each pod defaults to an id of its own (its hostname)"
    assert settings.kafka_properties == {"fetch.min.bytes": "1024"}


def test_default_settings_are_streamer_settings() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["settings"]) <= set(Settings.model_fields)


def test_values_schema_is_valid_and_accepts_the_defaults() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)


def _value_paths(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    opaque = {
        "settings",
        "resources",
        "podSecurityContext",
        "securityContext",
        "keda.behavior",
        "grafanaDashboard.labels",
    }
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in opaque:
            yield from _value_paths(value, f"{path}.")
        else:
            yield path


def test_chart_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    missing = [p for p in _value_paths(values) if f"| `{p}` |" not in readme]
    assert not missing, f"values missing from the README table: {missing}"


def test_dashboard_config_map_ships_the_dashboard(keda_docs: list[dict[str, Any]]) -> None:
    (config_map,) = [d for d in keda_docs if d["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["streamer.json"]) == dash.load()


def _notes(helm: str, tmp_path: Path, *sets: str) -> str:
    """NOTES.txt rendered offline (helm only renders it on install, against a cluster):
    a copy of the chart carries it as a named template inside a ConfigMap."""
    chart = tmp_path / "streamer"
    shutil.copytree(CHART, chart)
    notes_file = chart / "templates" / "NOTES.txt"
    notes = notes_file.read_text()
    notes_file.unlink()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "notes.under-test" -}}\n' + notes + "\n{{- end }}\n"
    )
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "notes.under-test" . | quote }}\n'
    )
    docs = render(helm, *sets, chart=chart)
    text: str = next(d for d in docs if d["metadata"]["name"] == "notes")["data"]["notes"]
    return text


@pytest.mark.parametrize(
    ("sets", "expected", "warns"),
    [
        ((), "Scaling: fixed at 2 replicas", False),
        (("replicaCount=8",), "Scaling: fixed at 8 replicas", True),
        (("keda.enabled=true",), "Scaling: KEDA, on the group's lag, 1..6 replicas", False),
        (("keda.enabled=true", "keda.maxReplicaCount=8"), "1..8 replicas", True),
        (("autoscaling.enabled=true",), "Scaling: a CPU HorizontalPodAutoscaler", False),
    ],
)
def test_notes_explain_scaling_and_warn_about_idle_replicas(
    helm: str, tmp_path: Path, sets: tuple[str, ...], expected: str, warns: bool
) -> None:
    notes = _notes(helm, tmp_path, *sets)
    assert "kubectl port-forward -n payments svc/fraud-streamer-metrics 9464" in notes
    assert expected in notes
    assert ("WARNING" in notes and "sit idle" in notes) is warns
