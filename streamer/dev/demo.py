"""``make demo``: the whole job on a laptop, with live progress, then a summary.

Starts (or finds) Kafka and Redis, creates the topics, seeds the synthetic feature set,
produces synthetic card payments at a steady rate, runs ``streamer run`` as a real
process, and shows events/s, end-to-end latency and the share of review/decline decisions
while it scores. Then it stops everything and prints a few scored events.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np
import redis
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from rich.console import Console
from rich.live import Live
from rich.table import Table

from streamer.codec.schemas import scored_schema
from streamer.codec.wire import make_decoder
from streamer.dev.devstack.stack import acquire
from streamer.dev.generator import send_synthetic
from streamer.errors import Rejection
from streamer.features.loader import load_command
from streamer.features.reference import currency_exponent

EVENTS = int(os.environ.get("DEMO_EVENTS", "30000"))
RATE = float(os.environ.get("DEMO_RATE", "2000"))
console = Console(stderr=True)


def _create_topics(bootstrap: str, names: dict[str, int], scored: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # The scored topic stamps records with the broker's append time: latency to acknowledgement.
    futures = admin.create_topics(
        [
            NewTopic(
                n,
                num_partitions=p,
                replication_factor=1,
                config={"message.timestamp.type": "LogAppendTime"} if n == scored else {},
            )
            for n, p in names.items()
        ]
    )
    for future in futures.values():
        future.result(timeout=30)


def _view(
    count: int, rate: float, latencies: deque[float], decisions: Counter[str], status: Counter[str]
) -> Table:
    table = Table(title=f"streamer demo: scoring {EVENTS:,} synthetic card payments", min_width=60)
    table.add_column("metric")
    table.add_column("value", justify="right")
    lat = np.array(latencies) if latencies else np.array([0.0])
    table.add_row("scored events", f"{count:,} / {EVENTS:,}")
    table.add_row("throughput (last 2 s)", f"{rate:,.0f} events/s")
    table.add_row(
        "end-to-end latency p50 / p99",
        f"{np.percentile(lat, 50):.1f} / {np.percentile(lat, 99):.1f} ms",
    )
    total = max(sum(decisions.values()), 1)
    for decision in ("APPROVE", "REVIEW", "DECLINE"):
        table.add_row(
            f"decision {decision}",
            f"{decisions[decision]:,} ({100 * decisions[decision] / total:.2f}%)",
        )
    table.add_row("feature status", ", ".join(f"{k}={v:,}" for k, v in status.most_common()))
    return table


def _summary(samples: list[dict[str, Any]]) -> Table:
    """Three scored events of each decision, the highest scores first."""
    table = Table(title="a few scored events")
    for column in ("txn", "card", "amount", "score", "decision", "features", "ms"):
        table.add_column(column, no_wrap=True)
    picked = []
    for decision in ("DECLINE", "REVIEW", "APPROVE"):
        of_kind = [s for s in samples if s["decision"] == decision]
        picked += sorted(of_kind, key=lambda r: -r["score"])[:3]
    for s in picked:
        amount = s["amount_minor"] / 10 ** currency_exponent(s["currency"])
        table.add_row(
            s["transaction_id"][:8],
            s["card_id"],
            f"{amount:,.2f} {s['currency']}",
            f"{s['score']:.4f}",
            s["decision"],
            s["feature_status"],
            str(s["publish_time"] - s["event_time"]),
        )
    return table


def main() -> int:
    run_id = uuid.uuid4().hex[:6]
    topics = {
        f"demo-{run_id}.transactions": 3,
        f"demo-{run_id}.scored": 3,
        f"demo-{run_id}.transactions.dlq": 1,
    }
    inp, out, dlq = topics
    console.print(
        "[bold]starting Kafka and Redis[/] (first run fetches the Kafka jars with Maven)…"
    )
    with acquire() as stack:
        console.print(f"Kafka {stack.kafka_bootstrap} ({stack.source}), Redis {stack.redis_url}")
        _create_topics(stack.kafka_bootstrap, topics, out)
        seeded = load_command(redis.Redis.from_url(stack.redis_url), prefix="", file=None)
        console.print(f"seeding features: {seeded}")
        env = {
            **os.environ,
            "STREAMER_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
            "STREAMER_REDIS_URL": stack.redis_url,
            "STREAMER_INPUT_TOPIC": inp,
            "STREAMER_OUTPUT_TOPIC": out,
            "STREAMER_DLQ_TOPIC": dlq,
            "STREAMER_GROUP_ID": f"demo-{run_id}",
            "STREAMER_INPUT_FORMAT": "single-object",
            "STREAMER_OUTPUT_FORMAT": "single-object",
            "STREAMER_LOG_LEVEL": "WARNING",
        }
        log_path = Path(".dev") / "demo-streamer.log"
        log_path.parent.mkdir(exist_ok=True)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamer", "run"], env=env, stdout=log, stderr=log
            )
        producer = threading.Thread(
            target=send_synthetic,
            kwargs={
                "topic": inp,
                "bootstrap_servers": stack.kafka_bootstrap,
                "count": EVENTS,
                "rate": RATE,
            },
            daemon=True,
        )
        producer.start()
        samples = _watch(stack.kafka_bootstrap, out, proc)
        proc.terminate()
        code = proc.wait(60)
    console.print(_summary(samples))
    console.print(
        f"streamer exited with {code}; its log is in {log_path}. Everything it started is stopped."
    )
    return 0 if code == 0 and len(samples) >= EVENTS else 1


def _watch(bootstrap: str, topic: str, proc: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    decoder = make_decoder("single-object", reader_schema=scored_schema())
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-watch-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    latencies: deque[float] = deque(maxlen=20_000)
    decisions: Counter[str] = Counter()
    status: Counter[str] = Counter()
    recent: deque[tuple[float, int]] = deque()
    samples: list[dict[str, Any]] = []
    count = 0
    deadline = time.monotonic() + EVENTS / RATE + 120
    with Live(
        _view(0, 0.0, latencies, decisions, status), console=console, refresh_per_second=4
    ) as live:
        while count < EVENTS and time.monotonic() < deadline and proc.poll() is None:
            for msg in consumer.consume(1000, 0.25):
                if msg.error():
                    continue
                record = decoder.decode(msg.value())
                if isinstance(record, Rejection):
                    continue
                count += 1
                _, acked = msg.timestamp()
                latencies.append(acked - record["event_time"])
                decisions[record["decision"]] += 1
                status[record["feature_status"]] += 1
                samples.append(record)
            now = time.monotonic()
            recent.append((now, count))
            while recent and recent[0][0] < now - 2:
                recent.popleft()
            rate = (count - recent[0][1]) / max(now - recent[0][0], 1e-3) if recent else 0.0
            live.update(_view(count, rate, latencies, decisions, status))
    consumer.close()
    return samples


if __name__ == "__main__":
    sys.exit(main())
