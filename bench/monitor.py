"""``streamer monitor``: its Redis state per event, and how fast it consumes.

Two measures, each on services of its own (a local broker from the devstack and a fresh
redis-server, so ``used_memory`` deltas are the monitor's alone):

- **state**: ``used_memory`` after writing N scored events through ``JoinState`` (UUID
  transaction ids, as the synthetic source makes), then after labelling a share of them,
  then with 29 logged model inputs per event; per event, and the 120-day horizon at 10
  million events a day, computed;
- **throughput**: scored events and labels produced to their topics first, then one
  ``streamer monitor run`` process drains them: messages per second between the first and
  the last message its own counter (``streamer_monitor_messages_total``) shows, and its
  CPU (and the redis-server's) per message;
- **refresh**: how long recomputing one window's gauges takes from N joined events.

    python bench/monitor.py [--events 200000] [--throughput-events 100000]
        [--batch-size 1000] [--refresh-events 100000] [--json bench/results/monitor.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import procstat  # noqa: E402

from streamer.codec.schemas import scored_schema  # noqa: E402
from streamer.codec.wire import make_encoder  # noqa: E402
from streamer.dev.devstack.processes import free_port  # noqa: E402
from streamer.dev.devstack.redis import RedisServer  # noqa: E402
from streamer.dev.devstack.stack import acquire  # noqa: E402
from streamer.dev.labels import generate_labels  # noqa: E402
from streamer.dev.synth import generate_labeled, make_population  # noqa: E402
from streamer.monitor.labels import label_schema  # noqa: E402
from streamer.monitor.records import ScoredRow, pack_features, pack_label, pack_scored  # noqa: E402
from streamer.monitor.state import JoinState, LabelWrite, ScoredWrite  # noqa: E402

DAY_MS = 86_400_000
PER_DAY, HORIZON_DAYS = 10_000_000, 120


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def state_bytes(client: redis.Redis, n: int, label_share: float) -> dict[str, float]:
    """Bytes of Redis memory per scored event, per label, per logged feature set."""
    state = JoinState(client, "", HORIZON_DAYS * DAY_MS)
    now = int(time.time() * 1000)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    rng = np.random.default_rng(1)
    version = state.interner.id("version", "fraud-gbt@2")
    before = _used(client)
    for start in range(0, n, 1000):
        writes = []
        for i in range(start, min(n, start + 1000)):
            t = now - int(rng.integers(0, 7 * DAY_MS))
            row = ScoredRow(ids[i], t, 1234, "EUR", float(rng.random()), "APPROVE", version)
            writes.append(ScoredWrite(ids[i], pack_scored(row), row.hour, version))
        state.add_scored(writes)
    scored = _used(client)
    labelled = ids[: int(n * label_share)]
    for start in range(0, len(labelled), 1000):
        state.add_labels(
            [LabelWrite(t, pack_label(now, 2, 1)) for t in labelled[start : start + 1000]]
        )
    labels = _used(client)
    features = pack_features(state.interner.feature_set([f"f{i}" for i in range(29)]), [1.0] * 29)
    logged = [str(uuid.uuid4()) for _ in range(n // 4)]
    for start in range(0, len(logged), 1000):
        writes = [
            ScoredWrite(t, pack_scored(ScoredRow(t, now, 1, "EUR", 0.5, "APPROVE", version)),
                        now // 3_600_000, version, features)
            for t in logged[start : start + 1000]
        ]  # fmt: skip
        state.add_scored(writes)
    with_features = _used(client)
    per_scored = (scored - before) / n
    per_label = (labels - scored) / max(len(labelled), 1)
    per_logged = (with_features - labels) / len(logged)
    return {
        "events": n,
        "bytes_per_scored_event": round(per_scored, 1),
        "bytes_per_label_joined": round(per_label, 1),
        "bytes_per_event_with_29_logged_inputs": round(per_logged, 1),
    }


def horizon_gb(per_scored: float, per_label: float, label_share: float) -> float:
    events = PER_DAY * HORIZON_DAYS
    return round(events * (per_scored + label_share * per_label) / 1e9, 1)


def _topic(admin: AdminClient, name: str, partitions: int) -> str:
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[
        name
    ].result(30)
    return name


def _produce(bootstrap: str, topic: str, values: list[tuple[bytes, str]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for value, key in values:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(120)


def _messages(n: int) -> tuple[list[tuple[bytes, str]], list[tuple[bytes, str]]]:
    batch = generate_labeled(
        make_population(7, 5000, 500), n, seed=3, start_ms=int(time.time() * 1000) - 8 * DAY_MS
    )
    scored_enc = make_encoder("single-object", schema=scored_schema())
    label_enc = make_encoder("single-object", schema=label_schema())
    rng = np.random.default_rng(2)
    scored = []
    for e in batch.events:
        s = float(rng.random())
        record = {
            **{k: e[k] for k in ("transaction_id", "card_id", "merchant_id", "amount_minor")},
            **{k: e[k] for k in ("currency", "event_time")},
            "score": s, "decision": "DECLINE" if s > 0.95 else "APPROVE",
            "review_threshold": 0.5, "decline_threshold": 0.95, "model_name": "fraud-gbt",
            "model_version": "2", "feature_status": "COMPLETE", "received_time": e["event_time"],
            "scored_time": e["event_time"], "publish_time": e["event_time"],
            "processing_latency_ms": 1.0, "source_partition": 0, "source_offset": 0,
            "shadow_score": s / 2, "shadow_decision": "APPROVE", "shadow_model_version": "1",
        }  # fmt: skip
        scored.append((scored_enc.encode(record), e["card_id"]))
    labels = [
        (label_enc.encode(x), x["card_id"])
        for x in generate_labels(batch.events, batch.labels, seed=4)
    ]
    return scored, labels


def _consumed(port: int) -> int:
    """Messages the monitor applied so far, from its own counter (cheap to read)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0
    return int(
        sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "streamer_monitor_messages_total"
        )
    )


def throughput(bootstrap: str, redis_server: RedisServer, n: int, batch: int) -> dict[str, Any]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    run = uuid.uuid4().hex[:8]
    scored_topic = _topic(admin, f"bench-scored-{run}", 3)
    labels_topic = _topic(admin, f"bench-labels-{run}", 3)
    scored, labels = _messages(n)
    _produce(bootstrap, scored_topic, scored)
    _produce(bootstrap, labels_topic, labels)
    total = len(scored) + len(labels)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env |= {
        "STREAMER_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "STREAMER_REDIS_URL": redis_server.url,
        "STREAMER_REDIS_KEY_PREFIX": f"bench{run}:", "STREAMER_OUTPUT_TOPIC": scored_topic,
        "STREAMER_LABELS_TOPIC": labels_topic, "STREAMER_MONITOR_GROUP_ID": f"bench-{run}",
        "STREAMER_METRICS_PORT": str(port), "PYTHONPATH": str(REPO),
    }  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "monitor", "run", "--refresh-s", "3600",
         "--batch-size", str(batch)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while (first := _consumed(port)) == 0:
            time.sleep(0.01)
        t0, cpu0 = time.monotonic(), procstat.cpu_seconds(proc.pid)
        redis0 = procstat.cpu_seconds(redis_server.pid)
        while (last := _consumed(port)) < total:
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        cpu = procstat.cpu_seconds(proc.pid) - cpu0
        redis_cpu = procstat.cpu_seconds(redis_server.pid) - redis0
    finally:
        proc.terminate()
        proc.wait(60)
    measured = last - first
    return {
        "scored": len(scored),
        "labels": len(labels),
        "batch_size": batch,
        "messages_per_s": round(measured / elapsed),
        "monitor_cpu_us_per_message": round(cpu / measured * 1e6, 1),
        "redis_cpu_us_per_message": round(redis_cpu / measured * 1e6, 1),
    }


def refresh_cost(client: redis.Redis, n: int) -> dict[str, float]:
    """Seconds to recompute one window's measures from ``n`` joined events (the gauges
    read two windows per refresh)."""
    from streamer.monitor.metrics import by_version
    from streamer.monitor.report import read_window

    state = JoinState(client, "refresh:", HORIZON_DAYS * DAY_MS)
    now = int(time.time() * 1000)
    version = state.interner.id("version", "fraud-gbt@2")
    rng = np.random.default_rng(3)
    for start in range(0, n, 1000):
        ids = [str(uuid.uuid4()) for _ in range(min(1000, n - start))]
        writes = []
        for t in ids:
            row = ScoredRow(t, now - int(rng.integers(0, 7 * DAY_MS)), 100, "EUR",
                            float(rng.random()), "APPROVE", version)  # fmt: skip
            writes.append(ScoredWrite(t, pack_scored(row), row.hour, version))
        state.add_scored(writes)
        state.add_labels([LabelWrite(t, pack_label(now, int(rng.integers(0, 3)), 1)) for t in ids])
    started = time.perf_counter()
    window = read_window(state, now - 7 * DAY_MS - 3_600_000, now + 3_600_000)
    read = time.perf_counter() - started
    by_version(window.joined, overall=True)
    return {
        "joined_events": len(window.joined),
        "read_s": round(read, 2),
        "read_and_measure_s": round(time.perf_counter() - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--throughput-events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--refresh-events", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-monitor-")))
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        state = state_bytes(client, args.events, 0.3)
        client.flushall()
        refresh = refresh_cost(client, args.refresh_events)
        client.flushall()
        with acquire() as stack:
            speed = throughput(
                stack.kafka_bootstrap, server, args.throughput_events, args.batch_size
            )
    finally:
        server.stop()
    per_scored, per_label = state["bytes_per_scored_event"], state["bytes_per_label_joined"]
    result = {
        "machine": f"{os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "state": state,
        "horizon_120d_at_10M_per_day_GB": {
            f"labelled {int(share * 100)}%": horizon_gb(per_scored, per_label, share)
            for share in (0.02, 0.3, 1.0)
        },
        "throughput": speed,
        "gauge_refresh_one_window": refresh,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
