"""A registry behind basic auth and mutual TLS (a gateway in front of the real Apicurio):
``produce``, ``run`` and ``consume`` reach it with the properties Confluent's serializers
take (``basic.auth.credentials.source``, ``basic.auth.user.info``, ``ssl.ca.location``,
``ssl.certificate.location``, ``ssl.key.location``), and every refusal is one line that
says what was refused, without the password.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from tests.fixtures.tls import TlsFiles, make_tls_files
from tests.integration.registry_proxy import RegistryProxy
from tests.integration.streamer_proc import start_streamer, stop, streamer_env, wait_caught_up

USER, PASSWORD = "fraud-svc", "s3cret-Pa55-registry"


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def gateway(schema_registry_url: str, tls: TlsFiles) -> Iterator[RegistryProxy]:
    proxy = RegistryProxy(schema_registry_url, USER, PASSWORD, tls).start()
    yield proxy
    proxy.stop()


def _properties(tls: TlsFiles, password: str = PASSWORD, **drop: bool) -> str:
    props = {
        "basic.auth.credentials.source": "USER_INFO",
        "basic.auth.user.info": f"{USER}:{password}",
        "ssl.ca.location": str(tls.ca),
        "ssl.certificate.location": str(tls.client_cert),
        "ssl.key.location": str(tls.client_key),
    }
    return json.dumps({k: v for k, v in props.items() if not drop.get(k.replace(".", "_"))})


def _cli(args: list[str], **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        env=streamer_env(**settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _produce(bootstrap: str, topic: str, url: str, props: str) -> subprocess.CompletedProcess[str]:
    args = ["produce", "-t", topic, "-n", "10", "-q", "-f", "confluent", "-b", bootstrap]
    return _cli(args, schema_registry_url=url, schema_registry_properties=props)


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert PASSWORD not in done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    return line


def test_produce_with_wrong_password_is_one_line_naming_authentication(
    kafka_bootstrap: str, gateway: RegistryProxy, tls: TlsFiles, make_topic: Any
) -> None:
    topic = make_topic("in", partitions=1)
    wrong = _properties(tls, password=PASSWORD[::-1])
    line = _one_line(_produce(kafka_bootstrap, topic, gateway.url, wrong))
    assert "refused authentication (HTTP 401)" in line, line
    assert "basic.auth.user.info" in line, line
    assert PASSWORD[::-1] not in line
    assert gateway.refused >= 1


def test_produce_without_the_ca_or_client_certificate_is_one_line_naming_tls(
    kafka_bootstrap: str, gateway: RegistryProxy, tls: TlsFiles, make_topic: Any
) -> None:
    topic = make_topic("in", partitions=1)
    no_ca = _one_line(
        _produce(kafka_bootstrap, topic, gateway.url, _properties(tls, ssl_ca_location=True))
    )
    assert "cannot reach the schema registry" in no_ca, no_ca
    assert "TLS" in no_ca, no_ca
    no_cert = _properties(tls, ssl_certificate_location=True, ssl_key_location=True)
    line = _one_line(_produce(kafka_bootstrap, topic, gateway.url, no_cert))
    assert "cannot reach the schema registry" in line, line


def test_run_with_wrong_password_stops_with_one_line(
    gateway: RegistryProxy, tls: TlsFiles, run_settings: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "streamer.log"
    settings = {
        **run_settings,
        "input_format": "confluent",
        "schema_registry_url": gateway.url,
        "schema_registry_properties": _properties(tls, password="guess"),
    }
    proc = start_streamer(log, **settings)
    assert proc.wait(timeout=120) == 3
    text = log.read_text()
    assert "Traceback" not in text
    [line] = [x for x in text.splitlines() if x.startswith("streamer:")]
    assert "refused authentication (HTTP 401)" in line, line
    assert "guess" not in text


def test_produce_run_and_consume_through_auth_and_mutual_tls(
    kafka_bootstrap: str,
    schema_registry_url: str,
    gateway: RegistryProxy,
    tls: TlsFiles,
    run_settings: dict[str, str],
    tmp_path: Path,
) -> None:
    topic, out = run_settings["input_topic"], run_settings["output_topic"]
    props = _properties(tls)
    produced = _produce(kafka_bootstrap, topic, gateway.url, props)
    assert produced.returncode == 0, produced.stderr

    settings = {
        **run_settings,
        "input_format": "confluent",
        "output_format": "confluent",
        "schema_registry_url": gateway.url,
        "schema_registry_properties": props,
    }
    log = tmp_path / "streamer.log"
    proc = start_streamer(log, **settings)
    try:
        wait_caught_up(kafka_bootstrap, run_settings["group_id"], topic, 90, proc)
    finally:
        assert stop(proc) == 0
    assert PASSWORD not in log.read_text()  # the effective settings are logged redacted

    args = ["consume", "-t", out, "-n", "10", "--from-beginning", "-f", "confluent"]
    registry = {"schema_registry_url": gateway.url, "schema_registry_properties": props}
    consumed = _cli([*args, "-b", kafka_bootstrap], **registry)
    assert consumed.returncode == 0, consumed.stderr
    lines = [json.loads(x) for x in consumed.stdout.splitlines()]
    assert len(lines) == 10
    assert all("rejected" not in x and x["decision"] for x in lines), lines[:2]
    direct = SchemaRegistryClient({"url": schema_registry_url})  # behind the gateway
    assert f"{topic}-value" in direct.get_subjects()
    assert f"{out}-value" in direct.get_subjects()
