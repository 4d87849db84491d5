"""The product, end to end on the real broker and Redis: every event in is scored exactly once
(in a clean run), correctly, and nothing is lost across SIGTERM and restart."""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import redis
from confluent_kafka import Producer
from fastavro import schemaless_reader, schemaless_writer

from streamer.dev.generator import send_synthetic
from streamer.features.engineering import assemble, event_columns
from streamer.features.layout import CARD_FIELDS, MERCHANT_FIELDS, card_key, merchant_key
from streamer.features.velocity import fold, overlay
from tests.integration.conftest import Bed
from tests.integration.streamer_proc import (
    REPO,
    committed_total,
    decode_single_object,
    load_synthetic_features,
    plain_schema,
    read_all,
    start_streamer,
    stop,
    wait_caught_up,
    wait_until,
)
from tests.unit.fakes import make_event

N = 20_000


def _model_dir() -> Path:
    """The version the stream scores with by default: fraud-gbt@champion."""
    aliases = json.loads((REPO / "models" / "fraud-gbt" / "aliases.json").read_text())
    return REPO / "models" / "fraud-gbt" / aliases["aliases"]["champion"]


def _expected_scores(
    events: list[dict[str, Any]], velocity: np.ndarray, client: redis.Redis, prefix: str
) -> np.ndarray:
    """Features fetched key by key, the velocity fields from ``velocity`` (the one
    definition's values, row by row), and one direct InferenceSession run (not streamer's
    Scorer)."""
    meta = json.loads((_model_dir() / "metadata.json").read_text())
    card_defaults = np.array([meta["card_defaults"][f] for f in CARD_FIELDS])
    merchant_defaults = np.array([meta["merchant_defaults"][f] for f in MERCHANT_FIELDS])

    def row(key: str, defaults: np.ndarray) -> np.ndarray:
        blob = client.get(key)
        return defaults if blob is None else np.frombuffer(blob, dtype="<f8")

    card = np.stack([row(card_key(prefix, e["card_id"]), card_defaults) for e in events])
    card = overlay(card, velocity, card_defaults)
    merchant = np.stack(
        [row(merchant_key(prefix, e["merchant_id"]), merchant_defaults) for e in events]
    )
    matrix = assemble(event_columns(events), card, merchant, meta["feature_names"])
    session = ort.InferenceSession(
        str(_model_dir() / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    outputs = session.run(None, {session.get_inputs()[0].name: matrix})
    probabilities = next(o for o in outputs if getattr(o, "ndim", 0) == 2)
    return np.asarray(probabilities[:, 1], dtype=np.float64)


def _velocity(
    inputs: dict[str, tuple[dict[str, Any], int, int]], events: list[dict[str, Any]]
) -> np.ndarray:
    """Each event's velocity values by the one definition, folded in the input partitions'
    order (a card's events are in one partition; the offset is the position)."""
    stream = sorted(inputs.values(), key=lambda x: (x[1], x[2]))
    ordered = [e for e, _, _ in stream]
    cols = event_columns(ordered)
    batch = fold(
        {},
        [e["card_id"] for e in ordered],
        [e["transaction_id"] for e in ordered],
        [offset for _, _, offset in stream],
        cols.event_time_ms,
        cols.amount,
        [e["merchant_id"] for e in ordered],
        cols.merchant_country,
    )
    row = {e["transaction_id"]: batch.values[i] for i, e in enumerate(ordered)}
    return np.stack([row[e["transaction_id"]] for e in events])


def test_twenty_thousand_events_scored_exactly_once_and_correctly(bed: Bed) -> None:
    load_synthetic_features(bed.redis_url, bed.prefix)
    send_synthetic(
        topic=bed.topics["input_topic"],
        bootstrap_servers=bed.kafka,
        count=N,
        n_cards=3000,
        n_merchants=300,
        event_seed=11,
    )
    proc = start_streamer(bed.tmp / "streamer.log", **bed.settings)
    try:
        wait_caught_up(bed.kafka, bed.group, bed.topics["input_topic"], 180, proc)
    finally:
        code = stop(proc)
    assert code == 0, (bed.tmp / "streamer.log").read_text()[-3000:]

    txn_schema, scored_schema = plain_schema("transaction_event"), plain_schema("scored_event")
    inputs = {}
    for msg in read_all(bed.kafka, bed.topics["input_topic"], N):
        event = decode_single_object(msg.value(), txn_schema)
        inputs[event["transaction_id"]] = (event, msg.partition(), msg.offset())
    outputs = read_all(bed.kafka, bed.topics["output_topic"], N)
    scored = [(decode_single_object(m.value(), scored_schema), m.key()) for m in outputs]

    assert len(inputs) == N
    assert len(scored) == N
    assert Counter(s["transaction_id"] for s, _ in scored) == Counter(inputs.keys())  # exactly once
    assert read_all(bed.kafka, bed.topics["dlq_topic"], 0, timeout=2) == []
    for s, key in scored:
        event, partition, offset = inputs[s["transaction_id"]]
        assert key == event["card_id"].encode()
        assert (s["card_id"], s["merchant_id"], s["amount_minor"], s["currency"]) == (
            event["card_id"],
            event["merchant_id"],
            event["amount_minor"],
            event["currency"],
        )
        assert (s["source_partition"], s["source_offset"]) == (partition, offset)
        assert s["publish_time"] >= s["scored_time"] >= s["received_time"]
        assert s["feature_status"] == "COMPLETE"

    ordered = sorted(scored, key=lambda pair: pair[0]["transaction_id"])
    events = [dict(inputs[s["transaction_id"]][0]) for s, _ in ordered]
    expected = _expected_scores(events, _velocity(inputs, events), bed.redis, bed.prefix)
    actual = np.array([s["score"] for s, _ in ordered])
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    review, decline = ordered[0][0]["review_threshold"], ordered[0][0]["decline_threshold"]
    decisions = np.where(
        actual >= decline, "DECLINE", np.where(actual >= review, "REVIEW", "APPROVE")
    )
    assert [s["decision"] for s, _ in ordered] == decisions.tolist()
    assert {"APPROVE", "REVIEW", "DECLINE"} <= set(decisions.tolist()), (
        "synthetic fraud is scored high"
    )


def _producing(bootstrap: str, topic: str, seed: int) -> threading.Thread:
    """N events at 4,000/s in the background: a stop after a few thousand is mid-stream."""
    thread = threading.Thread(
        target=send_synthetic,
        kwargs={
            "topic": topic,
            "bootstrap_servers": bootstrap,
            "count": N,
            "rate": 4000.0,
            "n_cards": 3000,
            "n_merchants": 300,
            "event_seed": seed,
        },
    )
    thread.start()
    return thread


def test_sigterm_mid_stream_and_restart_lose_nothing(bed: Bed) -> None:
    load_synthetic_features(bed.redis_url, bed.prefix)
    producer = _producing(bed.kafka, bed.topics["input_topic"], seed=12)
    settings = {**bed.settings, "max_batch_size": "200"}
    first = start_streamer(bed.tmp / "first.log", **settings)
    try:
        wait_until(
            lambda: committed_total(bed.kafka, bed.group, bed.topics["input_topic"]) > 2000,
            120,
            "some commits",
            first,
        )
    finally:
        code = stop(first)
    assert code == 0, (bed.tmp / "first.log").read_text()[-3000:]
    after_first = committed_total(bed.kafka, bed.group, bed.topics["input_topic"])
    assert after_first < N, "the first run should have been stopped mid-stream"

    producer.join()  # the rest of the stream arrives while no streamer runs
    second = start_streamer(bed.tmp / "second.log", **settings)
    try:
        wait_caught_up(bed.kafka, bed.group, bed.topics["input_topic"], 180, second)
    finally:
        assert stop(second) == 0

    txn_schema, scored_schema = plain_schema("transaction_event"), plain_schema("scored_event")
    inputs = {
        decode_single_object(m.value(), txn_schema)["transaction_id"]
        for m in read_all(bed.kafka, bed.topics["input_topic"], N)
    }
    outputs = Counter(
        decode_single_object(m.value(), scored_schema)["transaction_id"]
        for m in read_all(bed.kafka, bed.topics["output_topic"], N)
    )
    assert len(inputs) == N
    assert inputs == set(outputs), f"{len(inputs - set(outputs))} inputs have no output"
    # A graceful stop drains and commits everything it published: nothing is scored twice.
    duplicates = sum(outputs.values()) - N
    print(f"SIGTERM mid-stream + restart: {N} sent, 0 lost, {duplicates} duplicates")
    assert duplicates == 0


def test_raw_input_from_any_avro_writer_is_scored(bed: Bed) -> None:
    """Plain Avro binary written by fastavro directly (not streamer's encoder)."""
    load_synthetic_features(bed.redis_url, bed.prefix)
    schema = plain_schema("transaction_event")
    producer = Producer({"bootstrap.servers": bed.kafka})
    sent = []
    for i in range(300):
        event = make_event(
            i,
            transaction_id=f"raw-{i}",
            card_id=f"card-{i % 50:06d}",
            merchant_id=f"merchant-{i % 30:05d}",
        )
        buf = io.BytesIO()
        schemaless_writer(buf, schema, event)
        producer.produce(bed.topics["input_topic"], buf.getvalue(), event["card_id"])
        sent.append(event["transaction_id"])
    producer.flush(30)
    proc = start_streamer(
        bed.tmp / "raw.log", **{**bed.settings, "input_format": "raw", "output_format": "raw"}
    )
    try:
        wait_caught_up(bed.kafka, bed.group, bed.topics["input_topic"], 120, proc)
    finally:
        assert stop(proc) == 0
    scored_schema = plain_schema("scored_event")
    out = [
        schemaless_reader(io.BytesIO(m.value()), scored_schema)
        for m in read_all(bed.kafka, bed.topics["output_topic"], len(sent))
    ]
    assert sorted(o["transaction_id"] for o in out) == sorted(sent)
    assert all(0.0 <= o["score"] <= 1.0 for o in out)


def test_exactly_once_survives_a_crash_without_duplicates(bed: Bed) -> None:
    """SIGKILL (no drain, no commit) mid-stream, then a restart: a read_committed consumer
    sees every input scored exactly once. At-least-once would show the crash's duplicates."""
    load_synthetic_features(bed.redis_url, bed.prefix)
    producer = _producing(bed.kafka, bed.topics["input_topic"], seed=13)
    settings = {
        **bed.settings,
        "max_batch_size": "250",
        "processing_guarantee": "exactly-once",
        "transactional_id": f"tx-{bed.group}",
    }
    first = start_streamer(bed.tmp / "first.log", **settings)
    try:
        wait_until(
            lambda: committed_total(bed.kafka, bed.group, bed.topics["input_topic"]) > 3000,
            120,
            "some transactions",
            first,
        )
    finally:
        first.kill()  # a crash: the open transaction is never committed
        first.wait(30)
    assert committed_total(bed.kafka, bed.group, bed.topics["input_topic"]) < N

    producer.join()  # the rest of the stream arrives while no streamer runs
    second = start_streamer(bed.tmp / "second.log", **settings)
    try:
        wait_caught_up(bed.kafka, bed.group, bed.topics["input_topic"], 180, second)
    finally:
        assert stop(second) == 0, (bed.tmp / "second.log").read_text()[-3000:]

    txn_schema, scored_schema = plain_schema("transaction_event"), plain_schema("scored_event")
    inputs = Counter(
        decode_single_object(m.value(), txn_schema)["transaction_id"]
        for m in read_all(bed.kafka, bed.topics["input_topic"], N)
    )
    outputs = Counter(
        decode_single_object(m.value(), scored_schema)["transaction_id"]
        for m in read_all(bed.kafka, bed.topics["output_topic"], N)  # read_committed
    )
    assert len(inputs) == N
    assert outputs == inputs, f"{sum(outputs.values()) - N} duplicates or losses"
