"""Helpers for the fault scenarios: a steady stream of valid events, and what came out of it.

Covered elsewhere and not repeated: SIGTERM and restart (test_pipeline_e2e), kill -9 with
exactly-once (test_pipeline_e2e), Redis stopped for 10 s (test_bad_input), Redis AUTH
(test_redis_auth).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from streamer.codec.schemas import transaction_schema
from streamer.codec.wire import make_encoder
from streamer.dev.devstack import kafka as devkafka
from streamer.dev.devstack.processes import spawn
from streamer.dev.synth import generate_events, make_population
from tests.integration.streamer_proc import decode_single_object, plain_schema, read_all

_BASE_PROPERTIES = devkafka.server_properties  # before any test patches it


@dataclass
class Stream:
    """Sends ``rate`` valid events per second in a thread (event time = now), for ``seconds``
    at most, or until ``finish_in`` ends it earlier: a scenario starts the stream, waits for
    a condition (committed progress), acts, and keeps the stream going for a fixed time after
    the action, however long the wait took."""

    bootstrap: str
    topic: str
    rate: int = 300
    seconds: float = 16.0
    sent: set[str] = field(default_factory=set)
    failed: int = 0
    _thread: threading.Thread | None = None
    _ends_at: float = float("inf")  # time.monotonic() at which no more events are sent

    def start(self) -> Stream:
        self._ends_at = time.monotonic() + self.seconds
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Still sending events."""
        return self._thread is not None and self._thread.is_alive()

    def finish_in(self, seconds: float) -> None:
        """Send for ``seconds`` more (never past the ``seconds`` cap), then stop."""
        self._ends_at = min(self._ends_at, time.monotonic() + seconds)

    def join(self) -> None:
        assert self._thread is not None
        self._thread.join()
        assert self.failed == 0, f"{self.failed} input events were never written"

    def _run(self) -> None:
        n = int(self.rate * self.seconds)
        events = generate_events(make_population(7, 3000, 300), n, seed=3, start_ms=0)
        encoder = make_encoder("single-object", schema=transaction_schema())
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        tag = time.monotonic_ns()
        started = time.monotonic()
        for i, event in enumerate(events):
            time.sleep(max(0.0, started + i / self.rate - time.monotonic()))  # why: pacing
            if time.monotonic() >= self._ends_at:
                break
            tx = f"fault-{tag}-{i}"
            stamped = {**event, "transaction_id": tx, "event_time": time.time_ns() // 1_000_000}
            producer.produce(
                self.topic, encoder.encode(stamped), event["card_id"], on_delivery=self._report
            )
            self.sent.add(tx)
            producer.poll(0)
        producer.flush(120)

    def _report(self, err: object, msg: object) -> None:
        if err is not None:
            self.failed += 1


def outputs(bootstrap: str, topic: str, expected: int) -> list[dict[str, Any]]:
    schema = plain_schema("scored_event")
    return [decode_single_object(m.value(), schema) for m in read_all(bootstrap, topic, expected)]


def lost_and_duplicates(sent: set[str], out: list[dict[str, Any]]) -> tuple[int, int]:
    counts = Counter(o["transaction_id"] for o in out)
    return len(sent - set(counts)), sum(counts.values()) - len(counts)


def first_output_after(out: list[dict[str, Any]], at_ms: int) -> dict[int, int]:
    """Per input partition, ms from ``at_ms`` to the first scored event published after it."""
    firsts: dict[int, int] = {}
    for o in out:
        if o["publish_time"] > at_ms:
            p = o["source_partition"]
            firsts[p] = min(firsts.get(p, o["publish_time"]), o["publish_time"])
    return {p: t - at_ms for p, t in firsts.items()}


def logged_at_ms(log: Path, event_prefix: str) -> int:
    """When the streamer logged its first line starting with ``event_prefix`` (epoch ms)."""
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if str(entry.get("event", "")).startswith(event_prefix):
                return int(datetime.fromisoformat(entry["timestamp"]).timestamp() * 1000)
    raise AssertionError(f"{log.name} has no line {event_prefix!r}")


def has_logged(log: Path, event_prefix: str) -> bool:
    """Whether the streamer has logged a line starting with ``event_prefix`` yet."""
    try:
        logged_at_ms(log, event_prefix)
    except (AssertionError, OSError, ValueError):  # not yet, or a line half written
        return False
    return True


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def restart_broker(broker: devkafka.KafkaBroker, timeout: float = 90.0) -> subprocess.Popen[bytes]:
    """Start a killed broker again: same properties, ports and data (no format)."""
    java = shutil.which("java")
    assert java, "Java 17 is needed for the broker"
    libs = devkafka.ensure_jars()
    conf = broker.workdir / "server.properties"
    cmd = [java, "-Xmx512m", "-Xms512m", "-cp", f"{libs}/*", "kafka.Kafka", str(conf)]
    proc = spawn(cmd, broker.workdir / "broker-restarted.log", die_with_parent=True)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, (broker.workdir / "broker-restarted.log").read_text()[-2000:]
        try:
            if admin.list_topics(timeout=2).brokers:
                return proc
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    raise AssertionError(f"the restarted broker did not answer within {timeout:.0f}s")


def sasl_properties(data_dir: Path, port: int, controller: int, sasl_port: int) -> dict[str, str]:
    """A broker with a SASL_PLAINTEXT (PLAIN) listener beside its PLAINTEXT one."""
    props = _BASE_PROPERTIES(data_dir, port, controller)
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="admin" password="admin-secret" user_alice="alice-secret";'
    )
    return {
        **props,
        "listeners": f"{props['listeners']},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
        "advertised.listeners": (
            f"{props['advertised.listeners']},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
        ),
        "listener.security.protocol.map": (
            f"{props['listener.security.protocol.map']},SASL_PLAINTEXT:SASL_PLAINTEXT"
        ),
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
    }
