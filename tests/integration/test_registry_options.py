"""The serializer options on a real registry (Apicurio, Confluent API): subject name
strategies, auto-registration off, use the latest version; for ``produce`` and ``run``.

What is checked is what the registry holds afterwards and the schema id each message
carries, read back with confluent-kafka's own client and ``AvroDeserializer``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.fixtures.events import CURRENT_SCHEMA, SCORED_SCHEMA
from tests.integration.streamer_proc import (
    read_all,
    start_streamer,
    stop,
    streamer_env,
    wait_caught_up,
)
from tests.integration.test_schema_registry import _events, _produce

FULL_NAME = "io.streamer.fraud.TransactionEvent"
STRATEGIES = ("topic", "record", "topic_record")


def _subjects(topic: str) -> dict[str, str]:
    return {"topic": f"{topic}-value", "record": FULL_NAME, "topic_record": f"{topic}-{FULL_NAME}"}


def _forget(client: SchemaRegistryClient, subject: str) -> None:
    """Delete ``subject`` for good (the record strategy's subject is shared by all tests)."""
    for permanent in (False, True):
        try:
            client.delete_subject(subject, permanent=permanent)
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise


def _produce_cli(
    bootstrap: str, url: str, topic: str, n: int, **settings: str
) -> subprocess.CompletedProcess[str]:
    cmd = ["produce", "-t", topic, "-n", str(n), "-q", "--format", "confluent"]
    return subprocess.run(
        [sys.executable, "-m", "streamer", *cmd, "-b", bootstrap, "--schema-registry-url", url],
        env=streamer_env(**settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ids(bootstrap: str, topic: str, n: int) -> set[int]:
    return {int.from_bytes(m.value()[1:5], "big") for m in read_all(bootstrap, topic, n)}


def _register(client: SchemaRegistryClient, subject: str, schema: str | dict[str, Any]) -> int:
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return int(client.register_schema(subject, Schema(text, "AVRO")))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_produce_registers_under_the_strategy_subject_only(
    kafka_bootstrap: str, schema_registry_url: str, make_topic: Any, strategy: str
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    topic = make_topic("in", partitions=1)
    subjects = _subjects(topic)
    _forget(client, FULL_NAME)

    done = _produce_cli(
        kafka_bootstrap, schema_registry_url, topic, 5, schema_registry_subject_strategy=strategy
    )
    assert done.returncode == 0, done.stderr

    registered = set(client.get_subjects())
    assert subjects[strategy] in registered
    assert not (set(subjects.values()) - {subjects[strategy]}) & registered
    latest = client.get_latest_version(subjects[strategy])
    assert _ids(kafka_bootstrap, topic, 5) == {latest.schema_id}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_auto_register_off_needs_the_schema_under_the_strategy_subject(
    kafka_bootstrap: str, schema_registry_url: str, make_topic: Any, strategy: str
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    topic = make_topic("in", partitions=1)
    subjects = _subjects(topic)
    _forget(client, FULL_NAME)
    for other in set(subjects.values()) - {subjects[strategy]}:  # the right schema, wrong place
        _register(client, other, CURRENT_SCHEMA.read_text())
    settings = {
        "schema_registry_subject_strategy": strategy,
        "schema_registry_auto_register": "false",
    }

    refused = _produce_cli(kafka_bootstrap, schema_registry_url, topic, 5, **settings)
    assert refused.returncode == 3, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert f"subject {subjects[strategy]!r}" in line, line
    assert "AUTO_REGISTER" in line, line
    assert subjects[strategy] not in client.get_subjects()  # nothing registered behind our back

    schema_id = _register(client, subjects[strategy], CURRENT_SCHEMA.read_text())
    done = _produce_cli(kafka_bootstrap, schema_registry_url, topic, 5, **settings)
    assert done.returncode == 0, done.stderr
    assert _ids(kafka_bootstrap, topic, 5) == {schema_id}
    assert client.get_versions(subjects[strategy]) == [1]
    _forget(client, FULL_NAME)


def _confluent_input(
    bootstrap: str, client: SchemaRegistryClient, topic: str, n: int
) -> list[dict[str, Any]]:
    events = _events("opt", n)
    serializer = AvroSerializer(client, CURRENT_SCHEMA.read_text())
    ctx = SerializationContext(topic, MessageField.VALUE)
    _produce(bootstrap, topic, [(e["card_id"].encode(), serializer(e, ctx)) for e in events])
    return events


def _run_settings(run_settings: dict[str, str], url: str, **extra: str) -> dict[str, str]:
    return {
        **run_settings,
        "input_format": "confluent",
        "output_format": "confluent",
        "schema_registry_url": url,
        **extra,
    }


def test_run_with_auto_register_off_stops_until_the_output_schema_is_registered(
    kafka_bootstrap: str, schema_registry_url: str, run_settings: dict[str, str], tmp_path: Path
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    topic, out = run_settings["input_topic"], run_settings["output_topic"]
    events = _confluent_input(kafka_bootstrap, client, topic, 20)
    settings = _run_settings(run_settings, schema_registry_url, schema_registry_auto_register="0")

    log = tmp_path / "refused.log"
    proc = start_streamer(log, **settings)
    assert proc.wait(timeout=120) == 3
    text = log.read_text()
    assert "Traceback" not in text
    [line] = [x for x in text.splitlines() if x.startswith("streamer:")]
    assert f"subject '{out}-value'" in line, line
    assert "AUTO_REGISTER" in line, line
    assert f"{out}-value" not in client.get_subjects()

    schema_id = _register(client, f"{out}-value", SCORED_SCHEMA.read_text())
    proc = start_streamer(tmp_path / "runs.log", **settings)
    try:
        wait_caught_up(kafka_bootstrap, run_settings["group_id"], topic, 90, proc)
    finally:
        assert stop(proc) == 0
    assert _ids(kafka_bootstrap, out, len(events)) == {schema_id}
    assert client.get_versions(f"{out}-value") == [1]


def test_run_with_use_latest_writes_the_latest_version(
    kafka_bootstrap: str, schema_registry_url: str, run_settings: dict[str, str], tmp_path: Path
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    topic, out = run_settings["input_topic"], run_settings["output_topic"]
    subject = f"{out}-value"
    client.set_compatibility(subject, "BACKWARD")
    first = _register(client, subject, SCORED_SCHEMA.read_text())
    newer = json.loads(SCORED_SCHEMA.read_text())
    newer["fields"].append({"name": "review_queue", "type": ["null", "string"], "default": None})
    latest = _register(client, subject, newer)  # evolved in the registry, ahead of streamer
    assert latest != first
    events = _confluent_input(kafka_bootstrap, client, topic, 20)

    settings = _run_settings(run_settings, schema_registry_url, schema_registry_use_latest="true")
    proc = start_streamer(tmp_path / "streamer.log", **settings)
    try:
        wait_caught_up(kafka_bootstrap, run_settings["group_id"], topic, 90, proc)
    finally:
        assert stop(proc) == 0

    messages = read_all(kafka_bootstrap, out, len(events))
    assert {int.from_bytes(m.value()[1:5], "big") for m in messages} == {latest}
    deserializer = AvroDeserializer(client)
    ctx = SerializationContext(out, MessageField.VALUE)
    scored = [deserializer(m.value(), ctx) for m in messages]
    assert {s["transaction_id"] for s in scored} == {e["transaction_id"] for e in events}
    assert all(s["review_queue"] is None for s in scored)
    assert all(0 <= s["score"] <= 1 for s in scored)
    assert client.get_versions(subject) == [1, 2]  # use-latest registered nothing
