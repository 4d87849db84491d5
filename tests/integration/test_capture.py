"""``streamer capture`` on the real broker: the first N events of a topic in an Avro file
that the gate and ``score-file`` read, undecodable messages skipped and counted, and a
topic whose last offsets are transaction markers still ends the capture."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import fastavro
from confluent_kafka import Producer

from streamer.codec.schemas import transaction_schema
from streamer.config.settings import Settings
from streamer.dev.generator import produce_synthetic
from streamer.model.gate_replay import file_events
from streamer.service.assembly import topic_encoder
from tests.integration.streamer_proc import streamer_env


def _streamer(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        env=streamer_env(**settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _ids(path: Path) -> list[str]:
    with path.open("rb") as handle:
        return [r["transaction_id"] for r in fastavro.reader(handle)]  # type: ignore[index,call-overload]


def test_captures_the_first_events_and_skips_what_the_stream_would_dead_letter(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("capture", partitions=3)
    env = {"kafka_bootstrap_servers": kafka_bootstrap, "input_topic": topic}
    sent = _streamer("produce", "-n", "300", "--quiet", **env)
    assert sent.returncode == 0, sent.stderr
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(7):  # what a broken upstream writes: the stream dead-letters these
        producer.produce(topic, value=b"\x00not avro at all", key=f"bad-{i}", partition=i % 3)
    producer.produce(topic, value=None, key="tombstone", partition=0)
    assert producer.flush(30) == 0

    some = tmp_path / "some.avro"
    first = _streamer("capture", "--max-events", "120", "--out", str(some), **env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    assert f"captured 120 events from {topic} to {some}" in first.stderr
    assert len(set(_ids(some))) == 120

    everything = tmp_path / "replay.avro"
    done = _streamer("capture", "--out", str(everything), **env)  # default 20000: to the end
    assert done.returncode == 0, done.stderr
    assert "captured 300 events" in done.stderr
    assert "(8 undecodable skipped)" in done.stderr
    captured = _ids(everything)
    assert sorted(captured) == sorted(set(captured))
    assert set(_ids(some)) <= set(captured)
    # the gate and score-file read it as the events they are
    events = file_events(everything)
    assert [e["transaction_id"] for e in events] == captured
    assert all(isinstance(e["event_time"], int) for e in events)
    assert not list(tmp_path.glob(".*partial*"))


def _send_in_transactions(kafka: str, topic: str, batches: int, per_batch: int) -> None:
    settings = Settings(kafka_bootstrap_servers=kafka)
    encoder = topic_encoder(settings, None, "single-object", topic, transaction_schema())
    producer = Producer({"bootstrap.servers": kafka, "transactional.id": f"t-{topic}"})
    producer.init_transactions(30)
    for batch in range(batches):
        producer.begin_transaction()
        produce_synthetic(producer, encoder, topic=topic, count=per_batch, event_seed=batch)
        producer.commit_transaction(30)


def test_a_topic_ending_in_transaction_markers_still_ends_the_capture(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Exactly-once producers leave a commit marker as every partition's last offset: no
    message carries it, so a capture waiting for that offset would never end."""
    topic = make_topic("capture-txn", partitions=2)
    _send_in_transactions(kafka_bootstrap, topic, batches=3, per_batch=40)
    out = tmp_path / "txn.avro"
    done = _streamer(
        "capture",
        "--topic",
        topic,
        "--out",
        str(out),
        "--timeout",
        "60",
        kafka_bootstrap_servers=kafka_bootstrap,
    )
    assert done.returncode == 0, done.stderr
    assert "captured 120 events" in done.stderr
    assert len(set(_ids(out))) == 120


def test_a_missing_topic_is_one_line_and_no_file(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "none.avro"
    done = _streamer(
        "capture",
        "--topic",
        "no-such-topic-capture",
        "--out",
        str(out),
        kafka_bootstrap_servers=kafka_bootstrap,
    )
    assert done.returncode == 3, done.stderr
    assert [x for x in done.stderr.splitlines() if x.startswith("streamer: ")]
    assert "Traceback" not in done.stderr
    assert not out.exists()
