"""Helpers for end-to-end tests: run ``streamer run`` as a real process, read topics back."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from fastavro import parse_schema, schemaless_reader

REPO = Path(__file__).resolve().parents[2]
_COORDINATOR_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
"""What a fresh broker answers while its offsets topic is still being created: wait."""


def plain_schema(name: str) -> Any:
    """A schema in schemas/ as a plain Avro reader sees it, timestamps kept as epoch millis."""
    text = (REPO / "schemas" / f"{name}.avsc").read_text()
    return parse_schema(json.loads(text.replace('"logicalType": "timestamp-millis"', '"x": 0')))


def decode_single_object(value: bytes, schema: Any) -> dict[str, Any]:
    """Plain fastavro on a single-object encoded value (independent of streamer's decoder)."""
    assert value[:2] == b"\xc3\x01"
    return schemaless_reader(io.BytesIO(value[10:]), schema)  # type: ignore[no-any-return]


def load_synthetic_features(redis_url: str, prefix: str) -> None:
    """``streamer features load --synthetic`` for the population the tests produce from."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer",
            "features",
            "load",
            "--synthetic",
            "--redis-url",
            redis_url,
            "--prefix",
            prefix,
            "--cards",
            "3000",
            "--merchants",
            "300",
        ],
        check=True,
        env=streamer_env(),
        capture_output=True,
        timeout=120,
    )


def streamer_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.update({f"STREAMER_{k.upper()}": v for k, v in settings.items()})
    env.setdefault("STREAMER_MODELS_DIR", str(REPO / "models"))
    env["PYTHONPATH"] = str(REPO)
    return env


def start_streamer(log_path: Path, **settings: str) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "streamer", "run"],
        env=streamer_env(**settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, "{}") while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError:
        return 0, "{}"


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets-probe"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in meta.partitions
        }
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets, retried while the group coordinator is still loading
    or, on a fresh broker, not there yet.

    read_uncommitted: a read_committed consumer asks for *stable* offsets (KIP-447) and waits
    while a crashed transactional instance's offset commit is pending; a probe must not.
    """
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_uncommitted"}
    )
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                tps = consumer.committed(
                    [TopicPartition(topic, p) for p in range(partitions)], timeout=10
                )
                return {tp.partition: tp.offset for tp in tps}
            except KafkaException as exc:
                transient = exc.args[0].retriable() or exc.args[0].code() in _COORDINATOR_MOVING
                if not transient or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        consumer.close()


def committed_total(bootstrap: str, group: str, topic: str, partitions: int = 3) -> int:
    """How many input offsets the group has committed, over all partitions."""
    return sum(max(o, 0) for o in committed(bootstrap, group, topic, partitions).values())


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"streamer exited with {proc.returncode} while waiting for {what}")
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_caught_up(
    bootstrap: str,
    group: str,
    topic: str,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    ends = end_offsets(bootstrap, topic)

    def caught_up() -> bool:  # an empty partition has nothing committed (-1001): done
        done = committed(bootstrap, group, topic, len(ends))
        return {p: max(o, 0) for p, o in done.items()} == ends

    wait_until(
        caught_up,
        timeout,
        f"group {group} to commit {ends}",
        proc,
    )


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Every message of ``topic``: at least ``expected``, and then everything up to the
    partitions' ends (what was written by then), or whatever else arrives in 1 s when a
    partition's end cannot be reached (an open transaction holds a read_committed reader
    back). The partitions are assigned, not subscribed: no group to join."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out.extend(_consumed(consumer.consume(1000, 0.5)))
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for p in partitions}  # fmt: skip
        idle_until = time.monotonic() + 1.0
        while time.monotonic() < idle_until and not _reached(consumer, topic, ends):
            batch = consumer.consume(1000, 0.2)
            out.extend(m for m in batch if not m.error())
    finally:
        consumer.close()
    return out


def _consumed(batch: list[Any]) -> list[Any]:
    for msg in batch:
        if msg.error():
            raise KafkaException(msg.error())
    return batch


def _reached(consumer: Consumer, topic: str, ends: dict[int, tuple[int, int]]) -> bool:
    """Whether the reader is at the end (``ends``: low and high watermarks) of every
    partition: an empty one has no position to be at."""
    positions = consumer.position([TopicPartition(topic, p) for p in ends])
    return all(
        tp.offset >= ends[tp.partition][1] or ends[tp.partition][1] <= ends[tp.partition][0]
        for tp in positions
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    if proc.poll() is None:
        proc.terminate()
    return proc.wait(timeout)


def refused_start(**settings: str) -> tuple[int, list[str], str]:
    """Run ``streamer run`` expecting it to stop at start-up: its exit code, its one-line
    ``streamer: ...`` messages, and all of standard error (for assertion messages)."""
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run"],
        env=streamer_env(**settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [x for x in done.stderr.splitlines() if x.startswith("streamer: ")]
    return done.returncode, lines, done.stderr
