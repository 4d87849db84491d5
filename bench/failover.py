"""How fast a consumer group recovers from a kill -9, per group protocol and session timeout.

Two figures per configuration, on a broker of our own (the KIP-848 session timeout is a
broker setting, ``group.consumer.session.timeout.ms``, whose floor
``group.consumer.min.session.timeout.ms`` is 45 s unless the broker lowers it):

- **resume**: ``kill -9`` of the only member, then the same process started again at once
  (same ``group.instance.id`` when static): seconds until it consumes again;
- **takeover**: two members, one killed for good: seconds until the survivor has consumed
  from every partition the dead one held.

Members are small Python processes with the same librdkafka settings as streamer's
consumer; a producer keeps writing to every partition meanwhile.

    python bench/failover.py [--repeat 2] [--json bench/results/failover.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamer.dev.devstack import kafka as devkafka

PARTITIONS = 6
BROKER_OVERRIDES = {
    # Lets KIP-848 groups use short session timeouts (the stock floor is 45 s).
    "group.consumer.min.session.timeout.ms": "6000",
    "group.consumer.heartbeat.interval.ms": "1000",
    "group.consumer.min.heartbeat.interval.ms": "1000",
}

_MEMBER = r"""
import sys, time, json
from confluent_kafka import Consumer
conf = json.loads(sys.argv[1])
c = Consumer(conf)
c.subscribe([sys.argv[2]])
seen = set()
while True:
    for m in c.consume(100, 0.05):
        if m.error() is None and m.partition() not in seen:
            seen.add(m.partition())
            print(f"p {m.partition()} {time.time():.3f}", flush=True)
"""


@dataclass(frozen=True)
class Case:
    """One configuration measured."""

    protocol: str  # classic | consumer (KIP-848)
    static: bool
    session_timeout_ms: int  # client-side for classic, broker-side for KIP-848


@dataclass
class Member:
    """A consumer process and the partitions it has consumed from, with when."""

    proc: subprocess.Popen[str]
    seen: dict[int, float]

    @classmethod
    def start(cls, conf: dict[str, Any], topic: str) -> Member:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MEMBER, json.dumps(conf), topic],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        member = cls(proc, {})
        threading.Thread(target=member._read, daemon=True).start()
        return member

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            _, partition, at = line.split()
            self.seen[int(partition)] = float(at)

    def kill(self) -> float:
        self.proc.kill()
        self.proc.wait()
        return time.time()


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def member_config(bootstrap: str, group: str, case: Case, instance: str) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "latest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.wait.max.ms": 100,
    }
    if case.protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf["partition.assignment.strategy"] = "cooperative-sticky"
        conf["session.timeout.ms"] = case.session_timeout_ms
        conf["heartbeat.interval.ms"] = min(3000, case.session_timeout_ms // 3)
    if case.static:
        conf["group.instance.id"] = instance
    return conf


def set_group_session_timeout(admin: AdminClient, group: str, case: Case) -> None:
    """KIP-848: the session timeout is the group's (broker-side) configuration."""
    if case.protocol != "consumer":
        return
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    entry = ConfigEntry(
        "consumer.session.timeout.ms",
        str(case.session_timeout_ms),
        incremental_operation=AlterConfigOpType.SET,
    )
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def resume(bootstrap: str, admin: AdminClient, topic: str, case: Case) -> float:
    group = f"fo-{uuid.uuid4().hex[:8]}"
    set_group_session_timeout(admin, group, case)
    first = Member.start(member_config(bootstrap, group, case, "i-1"), topic)
    if not _wait(lambda: len(first.seen) == PARTITIONS, 90):
        raise RuntimeError("the first member never consumed every partition")
    killed = first.kill()
    again = Member.start(member_config(bootstrap, group, case, "i-1"), topic)
    try:
        if not _wait(lambda: bool(again.seen), 120):
            return float("inf")
        return min(again.seen.values()) - killed
    finally:
        again.kill()


def takeover(bootstrap: str, admin: AdminClient, topic: str, case: Case) -> float:
    group = f"fo-{uuid.uuid4().hex[:8]}"
    set_group_session_timeout(admin, group, case)
    a = Member.start(member_config(bootstrap, group, case, "i-a"), topic)
    if not _wait(lambda: len(a.seen) == PARTITIONS, 90):
        raise RuntimeError("member a never consumed every partition")
    b = Member.start(member_config(bootstrap, group, case, "i-b"), topic)
    try:
        if not _wait(lambda: len(b.seen) >= PARTITIONS // 2, 120):
            raise RuntimeError("member b never got its share of the partitions")
        time.sleep(2)  # settled
        held_by_b = set(b.seen)
        killed = a.kill()
        moved = set(range(PARTITIONS)) - held_by_b
        if not _wait(lambda: moved <= set(b.seen), 120):
            return float("inf")
        return max(b.seen[p] for p in moved) - killed
    finally:
        b.kill()


def keep_producing(bootstrap: str, topic: str, stop: threading.Event) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    i = 0
    while not stop.is_set():
        producer.produce(topic, b"x", partition=i % PARTITIONS)
        producer.poll(0)
        i += 1
        time.sleep(0.002)
    producer.flush(10)


CASES = [
    Case("classic", False, 45_000),
    Case("classic", False, 10_000),
    Case("classic", True, 45_000),
    Case("classic", True, 10_000),
    Case("classic", True, 6_000),
    Case("consumer", False, 45_000),
    Case("consumer", True, 45_000),
    Case("consumer", True, 10_000),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base = devkafka.server_properties
    devkafka.server_properties = lambda *a: {**base(*a), **BROKER_OVERRIDES}  # type: ignore[assignment]
    broker = devkafka.KafkaBroker(Path(tempfile.mkdtemp(prefix="failover-")))
    broker.start()
    stop = threading.Event()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        topic = f"failover-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
        threading.Thread(target=keep_producing, args=(broker.bootstrap, topic, stop)).start()
        rows = []
        for case in CASES:
            for _ in range(args.repeat):
                row = {
                    **asdict(case),
                    "resume_s": round(resume(broker.bootstrap, admin, topic, case), 2),
                    "takeover_s": round(takeover(broker.bootstrap, admin, topic, case), 2),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
    finally:
        stop.set()
        broker.stop()


if __name__ == "__main__":
    main()
