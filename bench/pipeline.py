"""``make bench``: streamer against a raw passthrough and a naive per-event scorer.

All three run on the local stack (real broker, real Redis), one after the other, on the
same events. Each contender gets its own input topic holding the same pre-encoded backlog,
then the same events again at a steady rate:

- throughput: backlog events / time between the first and last output appended;
- end-to-end latency: output append time (LogAppendTime, i.e. broker acknowledgement)
  minus the event time stamped when the event was sent, for the steady-rate events;
- CPU per event: the contender's CPU time (``/proc``) from its first output to the last
  output of the backlog, over the events in between (start-up excluded).

Prints a table with ratios to streamer and writes JSON (bench/results/pipeline.json).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro import schemaless_reader
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import redis  # noqa: E402

from bench.procstat import cpu_seconds  # noqa: E402
from streamer.codec.schemas import known_schemas, transaction_schema, without_logical_types  # noqa: E402
from streamer.codec.wire import make_encoder  # noqa: E402
from streamer.dev.devstack.stack import Endpoints, acquire  # noqa: E402
from streamer.dev.generator import traceparent  # noqa: E402
from streamer.dev.synth import generate_events, make_population  # noqa: E402
from streamer.features.loader import load_command  # noqa: E402

console = Console()
Procs = list[subprocess.Popen[bytes]]
Launcher = Callable[[Endpoints, str, str, str], Procs]


def _streamer(extra_env: dict[str, str], processes: int = 1) -> Launcher:
    def launch(stack: Endpoints, inp: str, out: str, group: str) -> Procs:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMER_", "OTEL_"))}
        env.update(
            {
                "STREAMER_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
                "STREAMER_REDIS_URL": stack.redis_url,
                "STREAMER_INPUT_TOPIC": inp,
                "STREAMER_OUTPUT_TOPIC": out,
                "STREAMER_DLQ_TOPIC": inp + ".dlq",
                "STREAMER_GROUP_ID": group,
                "STREAMER_INPUT_FORMAT": "single-object",
                "STREAMER_OUTPUT_FORMAT": "single-object",
                "STREAMER_LOG_LEVEL": "WARNING",
                "STREAMER_MODELS_DIR": str(REPO / "models"),
                "STREAMER_METRICS_PORT": "0",
                "PYTHONPATH": str(REPO),
                **extra_env,
            }
        )
        return [  # each its own static member id: the same id would fence the other
            subprocess.Popen(
                [sys.executable, "-m", "streamer", "run"],
                env={**env, "STREAMER_GROUP_INSTANCE_ID": f"{group}-{i}"},
            )
            for i in range(processes)
        ]

    return launch


def _script(name: str, *extra: str) -> Launcher:
    def launch(stack: Endpoints, inp: str, out: str, group: str) -> Procs:
        args = [
            "--bootstrap",
            stack.kafka_bootstrap,
            "--input",
            inp,
            "--output",
            out,
            "--group",
            group,
        ]
        if name == "naive.py":
            args += ["--redis-url", stack.redis_url]
        return [
            subprocess.Popen(
                [sys.executable, str(REPO / "bench" / name), *args, *extra],
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        ]

    return launch


def _otlp_sink() -> str:
    """An OTLP/HTTP endpoint that accepts and discards spans: the exporter's cost only."""

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


def _traced() -> Launcher:
    return _streamer(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": _otlp_sink(),
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",  # the upstream's decision rules
        }
    )


# name -> (launcher factory, share of input events whose traceparent says "sampled")
CONTENDERS: dict[str, tuple[Callable[[], Launcher], float]] = {
    "streamer": (lambda: _streamer({}), 1.0),
    "streamer, tracing on, 10% sampled upstream": (_traced, 0.1),
    "streamer, tracing on, all sampled": (_traced, 1.0),
    # The cost of a challenger scored beside the champion on the same features.
    "streamer, shadow model": (lambda: _streamer({"STREAMER_SHADOW_MODEL": "fraud-gbt@1"}), 1.0),
    "streamer, 2 processes": (lambda: _streamer({}, processes=2), 1.0),
    "streamer, exactly-once": (
        lambda: _streamer({"STREAMER_PROCESSING_GUARANTEE": "exactly-once"}),
        1.0,
    ),
    "passthrough (ceiling)": (lambda: _script("passthrough.py"), 1.0),
    "naive per-event": (lambda: _script("naive.py"), 1.0),
}


def _topics(
    admin: AdminClient, names: list[str], partitions: int, log_append: bool = False
) -> None:
    config = {"message.timestamp.type": "LogAppendTime"} if log_append else {}
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1, config=config) for n in names]
    )
    for future in futures.values():
        future.result(timeout=30)


def _send(
    producer: Producer,
    topic: str,
    events: list[dict[str, Any]],
    rate: float = 0.0,
    sampled: float = 1.0,
) -> None:
    encoder = make_encoder("single-object", schema=transaction_schema())
    chooser = random.Random(42)
    started = time.monotonic()
    for i, event in enumerate(events):
        if rate:
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        stamped = {**event, "event_time": time.time_ns() // 1_000_000}
        while True:
            try:
                producer.produce(
                    topic,
                    encoder.encode(stamped),
                    event["card_id"],
                    headers=[("traceparent", traceparent(chooser.random() < sampled))],
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)


def _collect(
    consumer: Consumer,
    expected: int,
    timeout: float,
    procs: Procs,
    *,
    event_times: bool,
    cpu: list[tuple[int, float]] | None = None,
) -> list[tuple[int, int]]:
    """(append time, event time or 0) of outputs until ``expected`` arrived.

    Event times are decoded only when asked (the latency phase): decoding every backlog
    output here would take CPU from the contender on this 2-core machine. ``cpu`` gets
    (outputs so far, the contender's CPU seconds) at the first consume that returned
    outputs and at the end.
    """
    schemas = {fp: without_logical_types(schema) for fp, schema in known_schemas().items()}
    out: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while (
        len(out) < expected and time.monotonic() < deadline and all(p.poll() is None for p in procs)
    ):
        for msg in consumer.consume(2000, 0.2):
            if msg.error():
                continue
            event_time = 0
            if event_times:
                value = msg.value()
                record = schemaless_reader(io.BytesIO(value[10:]), schemas[value[2:10]], None)
                event_time = int(record["event_time"])
            out.append((msg.timestamp()[1], event_time))
        if cpu is not None and not cpu and out:
            cpu.append((len(out), cpu_seconds(procs)))
    if cpu is not None:
        cpu.append((len(out), cpu_seconds(procs)))
    return out


def run_contender(
    name: str,
    launch: Launcher,
    stack: Endpoints,
    backlog: list[dict[str, Any]],
    steady: list[dict[str, Any]],
    rate: float,
    sampled: float = 1.0,
) -> dict[str, Any]:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    tag = uuid.uuid4().hex[:6]
    inp, out = f"bench-{tag}-in", f"bench-{tag}-out"
    _topics(admin, [inp, inp + ".dlq"], 3)
    _topics(admin, [out], 3, log_append=True)
    producer = Producer(
        {"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 5, "compression.type": "lz4"}
    )
    _send(producer, inp, backlog, sampled=sampled)
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"bench-read-{tag}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([out])
    console.print(f"[bold]{name}[/]: draining a backlog of {len(backlog):,} events…")
    procs = launch(stack, inp, out, f"bench-{tag}")
    try:
        cpu: list[tuple[int, float]] = []
        drained = _collect(consumer, len(backlog), 600, procs, event_times=False, cpu=cpu)
        console.print(f"[bold]{name}[/]: {len(steady):,} events at {rate:,.0f}/s for latency…")
        _send(producer, inp, steady, rate, sampled)
        live = _collect(consumer, len(steady), 120, procs, event_times=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
        consumer.close()
    appended = np.array([a for a, _ in drained], dtype=np.float64)
    latency = np.array([a - e for a, e in live], dtype=np.float64)
    span_s = (appended.max() - appended.min()) / 1000.0 if appended.size > 1 else float("nan")
    return {
        "contender": name,
        "events": len(drained),
        "events_per_s": len(drained) / span_s if span_s > 0 else float("nan"),
        "cpu_us_per_event": _per_event_us(cpu),
        "latency_events": len(live),
        "latency_p50_ms": float(np.percentile(latency, 50)) if latency.size else float("nan"),
        "latency_p99_ms": float(np.percentile(latency, 99)) if latency.size else float("nan"),
        "complete": len(drained) >= len(backlog) and len(live) >= len(steady),
    }


def _per_event_us(cpu: list[tuple[int, float]]) -> float:
    """CPU microseconds per event between the first and the last CPU reading."""
    if len(cpu) < 2 or cpu[1][0] <= cpu[0][0]:
        return float("nan")
    (n0, s0), (n1, s1) = cpu[0], cpu[-1]
    return 1e6 * (s1 - s0) / (n1 - n0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000, help="backlog size per contender")
    parser.add_argument("--rate", type=float, default=1_000.0, help="steady rate for latency")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady-rate duration")
    parser.add_argument(
        "--only", action="append", help="run only these contenders (by name prefix)"
    )
    parser.add_argument("--exact", action="store_true", help="--only names are exact, not prefixes")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()
    population = make_population(7)
    backlog = generate_events(population, args.events, seed=101, start_ms=0)
    steady = generate_events(population, int(args.rate * args.seconds), seed=202, start_ms=0)
    contenders = {
        n: c
        for n, c in CONTENDERS.items()
        if not args.only or any(n == o or (not args.exact and n.startswith(o)) for o in args.only)
    }
    results = []
    with acquire() as stack:
        load_command(redis.Redis.from_url(stack.redis_url), prefix="", file=None)
        for name, (make_launcher, sampled) in contenders.items():
            results.append(
                run_contender(name, make_launcher(), stack, backlog, steady, args.rate, sampled)
            )
    base = next((r for r in results if r["contender"] == "streamer"), results[0])
    for r in results:
        if "tracing on" in r["contender"]:
            r["tracing_cost_pct"] = 100 * (1 - r["events_per_s"] / base["events_per_s"])
    table = Table(
        title=f"{args.events:,}-event backlog; latency at {args.rate:,.0f} events/s "
        f"({platform.machine()}, {os.cpu_count()} cores, broker and Redis on the same machine)"
    )
    columns = (
        "contender",
        "events/s",
        "vs streamer",
        "CPU µs/event",
        "p50 ms",
        "p99 ms",
        "complete",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "contender" else "right")
    for r in results:
        r["throughput_vs_streamer"] = r["events_per_s"] / base["events_per_s"]
        table.add_row(
            r["contender"],
            f"{r['events_per_s']:,.0f}",
            f"{r['throughput_vs_streamer']:.2f}x",
            f"{r['cpu_us_per_event']:.1f}",
            f"{r['latency_p50_ms']:.1f}",
            f"{r['latency_p99_ms']:.1f}",
            "yes" if r["complete"] else "NO",
        )
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "events": args.events,
                "rate": args.rate,
                "results": results,
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.json}")
    return 0 if all(r["complete"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
