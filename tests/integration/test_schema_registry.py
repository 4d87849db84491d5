"""The Confluent wire format against a real schema registry (Apicurio, Confluent API).

Producers and the fraud-service side use confluent-kafka's own ``AvroSerializer`` and
``AvroDeserializer``, not streamer's codec: what is tested is that streamer interoperates
with the serializers card processors actually run, on a registry that really enforces
compatibility and really goes away.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_writer

from streamer.codec.schemas import schema_json, scored_schema
from streamer.config.settings import Settings
from streamer.dev.devstack.schema_registry import SchemaRegistry
from streamer.testing import sample_event as base_event
from tests.fixtures.events import CURRENT_SCHEMA, V1_SCHEMA, V3_SCHEMA
from tests.integration.streamer_proc import (
    committed,
    end_offsets,
    read_all,
    start_streamer,
    stop,
    streamer_env,
    wait_caught_up,
    wait_until,
)

DECISIONS = {"APPROVE", "REVIEW", "DECLINE"}
# The running streamer remembers an unknown schema id this long (the setting's default).
NEGATIVE_TTL_S = float(Settings.model_fields["schema_registry_unknown_id_ttl_s"].default)


def _events(tag: str, n: int) -> list[dict[str, Any]]:
    return [
        base_event(
            transaction_id=f"{tag}-{i}",
            card_id=f"card-{i % 7:06d}",
            event_time=int(time.time() * 1000) - 60_000 + i,
            amount_minor=1_000 + i,
        )
        for i in range(n)
    ]


def _as_v1(event: dict[str, Any]) -> dict[str, Any]:
    """The same payment as a version-1 producer writes it (its ten fields only)."""
    fields = [f["name"] for f in json.loads(V1_SCHEMA.read_text())["fields"]]
    return {name: event[name] for name in fields}


def _serialize(
    client: SchemaRegistryClient, schema: Path, topic: str, events: list[dict[str, Any]]
) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs framed by confluent-kafka's AvroSerializer, which registers the
    writer schema under ``<topic>-value`` (topic name strategy, auto-registration)."""
    serializer = AvroSerializer(client, schema.read_text(), conf={"auto.register.schemas": True})
    ctx = SerializationContext(topic, MessageField.VALUE)
    return [(e["card_id"].encode(), serializer(e, ctx)) for e in events]


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in records:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def _scored(
    bootstrap: str, client: SchemaRegistryClient, topic: str, expected: int
) -> list[dict[str, Any]]:
    """The output topic read back with confluent-kafka's own AvroDeserializer."""
    deserializer = AvroDeserializer(client)
    ctx = SerializationContext(topic, MessageField.VALUE)
    return [deserializer(m.value(), ctx) for m in read_all(bootstrap, topic, expected)]


def _start(tmp_path: Path, run_settings: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    return start_streamer(
        tmp_path / "streamer.log",
        **{
            **run_settings,
            "input_format": "confluent",
            "output_format": "confluent",
            "schema_registry_url": url,
        },
    )


def _dlq_size(bootstrap: str, topic: str) -> int:
    return sum(end_offsets(bootstrap, topic).values())


def test_old_and_current_writers_are_scored_and_read_back_by_confluent_deserializer(
    kafka_bootstrap: str,
    schema_registry_url: str,
    run_settings: dict[str, str],
    tmp_path: Path,
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    topic, out = run_settings["input_topic"], run_settings["output_topic"]
    client.set_compatibility(f"{topic}-value", "BACKWARD")
    old, current = _events("old", 60), _events("new", 60)
    records = _serialize(client, V1_SCHEMA, topic, [_as_v1(e) for e in old])
    records += _serialize(client, CURRENT_SCHEMA, topic, current)
    assert len(client.get_versions(f"{topic}-value")) == 2  # v1, then current (compatible)
    _produce(kafka_bootstrap, topic, records)

    proc = _start(tmp_path, run_settings, schema_registry_url)
    try:
        wait_caught_up(kafka_bootstrap, run_settings["group_id"], topic, 90, proc)
    finally:
        assert stop(proc) == 0

    scored = _scored(kafka_bootstrap, client, out, len(records))
    assert sorted(s["transaction_id"] for s in scored) == sorted(
        e["transaction_id"] for e in old + current
    )
    assert all(0.0 <= s["score"] <= 1.0 and s["decision"] in DECISIONS for s in scored)
    by_id = {e["transaction_id"]: e for e in old + current}
    assert all(s["amount_minor"] == by_id[s["transaction_id"]]["amount_minor"] for s in scored)
    assert client.get_latest_version(f"{out}-value").schema_id > 0
    assert _dlq_size(kafka_bootstrap, run_settings["dlq_topic"]) == 0


def test_an_incompatible_writer_schema_is_refused_at_registration(
    schema_registry_url: str, unique: str
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    subject = f"t-{unique}-in-value"
    client.set_compatibility(subject, "BACKWARD")
    client.register_schema(subject, Schema(CURRENT_SCHEMA.read_text(), "AVRO"))
    incompatible = json.loads(CURRENT_SCHEMA.read_text())
    for field in incompatible["fields"]:
        if field["name"] == "card_id":
            field["type"] = "long"  # a string in every event already written

    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(json.dumps(incompatible), "AVRO"))
    assert refused.value.http_status_code == 409
    with pytest.raises(Exception, match=r"409|ncompatible"):  # the producer's path, too
        AvroSerializer(client, json.dumps(incompatible))(
            base_event(), SerializationContext(f"t-{unique}-in", MessageField.VALUE)
        )
    assert client.get_versions(subject) == [1]


def _next_schema_id(client: SchemaRegistryClient, unique: str) -> int:
    """The id the registry hands out next (Apicurio numbers content 1, 2, 3…): one more
    than that of a throwaway schema registered now."""
    probe = {"type": "record", "name": f"Probe{unique}", "fields": []}
    return int(client.register_schema(f"probe-{unique}", Schema(json.dumps(probe), "AVRO"))) + 1


def _confluent_frame(schema: dict[str, Any], schema_id: int, event: dict[str, Any]) -> bytes:
    """Magic byte 0, the 4-byte id, the Avro body: what any Confluent serializer writes."""
    body = BytesIO()
    v3_only = {"wallet_type": None, "labels": [], "installments": None}
    schemaless_writer(body, parse_schema(schema), event | v3_only)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


def _dead_letters(bootstrap: str, dlq_topic: str) -> list[dict[str, Any]]:
    cmd = ["dlq", "inspect", "--json", "-t", dlq_topic, "-b", bootstrap]
    listed = subprocess.run(
        [sys.executable, "-m", "streamer", *cmd],
        env=streamer_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in listed.stdout.splitlines()]


def test_unknown_schema_id_is_dead_lettered_then_replayed_after_registration(
    kafka_bootstrap: str,
    schema_registry_url: str,
    run_settings: dict[str, str],
    unique: str,
    tmp_path: Path,
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    topic, out, dlq = (run_settings[k] for k in ("input_topic", "output_topic", "dlq_topic"))
    # A v3 producer wrote with a schema id this registry has not issued yet (registered in
    # another environment, or the registry lost it). The doc makes the content new here.
    v3 = json.loads(V3_SCHEMA.read_text()) | {"doc": f"v3 for test {unique}"}
    # The streamer registers its output schema at start-up: let it finish starting before
    # the prediction, so that it takes no id between the prediction and the registration.
    client.register_schema(f"{out}-value", Schema(schema_json(scored_schema()), "AVRO"))
    proc = _start(tmp_path, run_settings, schema_registry_url)
    log = tmp_path / "streamer.log"
    wait_until(lambda: "assigned" in log.read_text(), 60, "the streamer consuming", proc)
    future_id = _next_schema_id(client, unique)
    event = base_event(transaction_id=f"unknown-{unique}", event_time=int(time.time() * 1000))
    _produce(kafka_bootstrap, topic, [(b"card-000001", _confluent_frame(v3, future_id, event))])
    try:
        wait_until(lambda: _dlq_size(kafka_bootstrap, dlq) == 1, 60, "a dead letter", proc)
        missed_at = time.monotonic()
        [letter] = _dead_letters(kafka_bootstrap, dlq)
        assert letter["error_class"] == "UnknownSchemaId", letter
        assert str(future_id) in letter["message"], letter

        registered = client.register_schema(f"{topic}-value", Schema(json.dumps(v3), "AVRO"))
        assert registered == future_id, "the registry did not issue the predicted id"
        # why: the running streamer remembers the miss for NEGATIVE_TTL_S; replay after it.
        time.sleep(max(0.0, NEGATIVE_TTL_S + 0.5 - (time.monotonic() - missed_at)))
        subprocess.run(
            [sys.executable, "-m", "streamer", "dlq", "replay", "-t", dlq, "-b", kafka_bootstrap],
            env=streamer_env(),
            capture_output=True,
            timeout=60,
            check=True,
        )
        wait_until(
            lambda: sum(end_offsets(kafka_bootstrap, out).values()) == 1, 60, "a score", proc
        )
    finally:
        assert stop(proc) == 0

    [scored] = _scored(kafka_bootstrap, client, out, 1)
    assert scored["transaction_id"] == event["transaction_id"]
    assert scored["decision"] in DECISIONS
    assert _dlq_size(kafka_bootstrap, dlq) == 1  # not dead-lettered a second time


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[SchemaRegistry]:
    """A registry this test may stop: its database on disk, so a restart keeps the ids."""
    registry = SchemaRegistry(tmp_path / "registry", persistent=True)
    registry.start()
    yield registry
    registry.stop()


def test_registry_outage_mid_stream_loses_nothing_and_scoring_resumes(
    kafka_bootstrap: str,
    own_registry: SchemaRegistry,
    run_settings: dict[str, str],
    tmp_path: Path,
) -> None:
    client = SchemaRegistryClient({"url": own_registry.url})
    topic, out, group = (run_settings[k] for k in ("input_topic", "output_topic", "group_id"))
    before, during = _events("before", 100), _events("during", 100)
    _produce(kafka_bootstrap, topic, _serialize(client, CURRENT_SCHEMA, topic, before))
    # Written by a v1 producer whose schema id the streamer has not looked up yet.
    late = _serialize(client, V1_SCHEMA, topic, [_as_v1(e) for e in during])

    proc = _start(tmp_path, run_settings, own_registry.url)
    try:
        wait_caught_up(kafka_bootstrap, group, topic, 90, proc)
        own_registry.stop()
        settled = committed(kafka_bootstrap, group, topic, 3)
        _produce(kafka_bootstrap, topic, late)
        time.sleep(5)  # why: several batches' worth of lookups against a dead registry
        assert proc.poll() is None, "streamer exited while the registry was down"
        assert committed(kafka_bootstrap, group, topic, 3) == settled
        own_registry.start()
        wait_caught_up(kafka_bootstrap, group, topic, 90, proc)
    finally:
        assert stop(proc) == 0

    scored = _scored(kafka_bootstrap, client, out, len(before) + len(during))
    assert {s["transaction_id"] for s in scored} == {e["transaction_id"] for e in before + during}
    assert _dlq_size(kafka_bootstrap, run_settings["dlq_topic"]) == 0
