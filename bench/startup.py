"""Start-up: how long ``streamer run`` takes from process start to work, and where it goes.

Each round starts ``python -m streamer run`` on a fresh input topic that already holds
a few events (the model in ``models/`` and the features in Redis are ready) in a group
that has committed offsets at the topic's start, as a restart, a rollout or a scale-up
finds its group (``--fresh-group``: none, so the consumer resets its offsets first, which
costs librdkafka about 0.1 s more), and times, from just before the process is spawned:

- ``assigned``: the ``assigned`` log line (the consumer group handed it partitions);
- ``first output``: the first scored event's append time on the output topic
  (LogAppendTime: the broker's acknowledgement).

``--source DIR`` (repeatable) runs other checkouts' ``streamer`` in alternating rounds,
A B A B…, so a before/after pair shares the machine's load. ``--imports`` adds each
tree's ``python -X importtime -m streamer version`` top costs. Bytecode is cached outside
the trees, as in an installed package or an image. The rounds begin once the machine is
idle (the 1-minute load average under ``--idle-below``, waited for at most
``--idle-wait`` seconds; the wait is reported). Prints a table and writes JSON
(bench/results/startup.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from phases import send, topics  # noqa: E402

from streamer.dev.devstack.stack import Endpoints, acquire  # noqa: E402
from streamer.dev.synth import generate_events, make_population  # noqa: E402
from streamer.features.loader import load_command  # noqa: E402
from streamer.features.redis_client import make_redis_client  # noqa: E402

CARDS = 5000
PYCACHE = REPO / "build" / "pycache"


def environment(stack: Endpoints, source: Path, tag: str) -> dict[str, str]:
    """``streamer run``'s environment for one round: its own topics and group."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMER_", "OTEL_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode cached, as an image has it
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(
        {
            "STREAMER_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
            "STREAMER_REDIS_URL": stack.redis_url,
            "STREAMER_INPUT_TOPIC": f"start-{tag}-in",
            "STREAMER_OUTPUT_TOPIC": f"start-{tag}-out",
            "STREAMER_DLQ_TOPIC": f"start-{tag}-in.dlq",
            "STREAMER_GROUP_ID": f"start-{tag}",
            "STREAMER_INPUT_FORMAT": "single-object",
            "STREAMER_OUTPUT_FORMAT": "single-object",
            "STREAMER_LOG_LEVEL": "INFO",
            "STREAMER_LOG_FORMAT": "json",
            "STREAMER_METRICS_PORT": "0",
            "STREAMER_MODELS_DIR": str(source / "models"),
            "PYTHONPATH": str(source),
        }
    )
    return env


class Lines:
    """The process's JSON log lines, read as they come (the pipe must never fill)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.records: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            try:
                self.records.append(json.loads(raw))
            except ValueError:
                continue

    def first(self, prefix: str) -> float:
        """Epoch seconds of the first line whose event starts with ``prefix`` (nan: none)."""
        for record in list(self.records):
            if str(record.get("event", "")).startswith(prefix):
                return datetime.fromisoformat(record["timestamp"]).timestamp()
        return float("nan")


def committed_at_start(bootstrap: str, group: str, topic: str, partitions: int) -> None:
    """Offsets at the start of ``topic`` committed for ``group``: a group that has run."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    offsets = [TopicPartition(topic, p, 0) for p in range(partitions)]
    consumer.commit(offsets=offsets, asynchronous=False)
    consumer.close()


def one_round(
    stack: Endpoints, source: Path, events: list[dict[str, Any]], fresh_group: bool
) -> dict[str, float]:
    """Spawn ``streamer run`` on a topic holding ``events``; time its first steps."""
    tag = uuid.uuid4().hex[:8]
    env = environment(stack, source, tag)
    inp, out = env["STREAMER_INPUT_TOPIC"], env["STREAMER_OUTPUT_TOPIC"]
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    topics(admin, [inp, inp + ".dlq"], 3)
    topics(admin, [out], 3, log_append=True)
    send(Producer({"bootstrap.servers": stack.kafka_bootstrap}), inp, events)
    if not fresh_group:
        committed_at_start(stack.kafka_bootstrap, env["STREAMER_GROUP_ID"], inp, 3)
    reader = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"start-read-{tag}",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([out])
    reader.consume(1, 1.0)  # joined before the contender starts: its wait is not counted
    started = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run"],
        env=env,
        cwd=source,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines = Lines(proc.stderr)
    first_output = float("nan")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        got = [m for m in reader.consume(100, 0.1) if not m.error()]
        if got:
            first_output = min(m.timestamp()[1] for m in got) / 1000
            break
    proc.terminate()
    proc.wait(60)
    reader.close()
    return {
        "assigned_s": lines.first("assigned") - started,
        "first_output_s": first_output - started,
        "exit": float(proc.returncode),
    }


def import_costs(source: Path, top: int) -> dict[str, Any]:
    """``python -X importtime -m streamer version``: total and the costliest packages."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPYCACHEPREFIX=str(PYCACHE), PYTHONPATH=str(source))
    command = [sys.executable, "-X", "importtime", "-m", "streamer", "version"]
    subprocess.run(command, env=env, cwd=source, capture_output=True, check=True)  # warm
    done = subprocess.run(command, env=env, cwd=source, capture_output=True, text=True, check=True)
    packages: dict[str, int] = {}
    total = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split(":", 1)[1].split("|")
        if not name.startswith("  "):  # a root import; nested ones are in its cumulative
            total += int(cumulative)
        name = name.strip()
        if "." not in name:  # a top-level package's first import counts all it pulls in
            packages[name] = max(packages.get(name, 0), int(cumulative))
    costly = sorted(packages.items(), key=lambda kv: -kv[1])
    return {"total_ms": total / 1000, "top_ms": [(n, us / 1000) for n, us in costly[:top]]}


def settle(below: float, most_s: float) -> float:
    """Wait until the 1-minute load average is under ``below`` (at most ``most_s``): the
    rounds time a start on an idle machine, not the tail of the runs before them (``make
    bench`` runs the pipeline's contenders just before). Returns the seconds waited."""
    started = time.monotonic()
    while os.getloadavg()[0] >= below and time.monotonic() - started < most_s:
        time.sleep(1.0)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, action="append", help="trees to run (A B A B…)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per tree")
    parser.add_argument("--events", type=int, default=30, help="events waiting in the input")
    parser.add_argument("--imports", action="store_true", help="also time each tree's imports")
    parser.add_argument("--fresh-group", action="store_true", help="a group with no offsets")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "startup.json")
    parser.add_argument(
        "--idle-below", type=float, default=0.5, help="start once the load average is under"
    )
    parser.add_argument("--idle-wait", type=float, default=120.0, help="but wait at most (s)")
    args = parser.parse_args()
    sources = [s.resolve() for s in (args.source or [REPO])]
    population = make_population(7, CARDS)
    events = generate_events(population, args.events, seed=101, start_ms=0)
    runs: dict[str, list[dict[str, float]]] = {str(s): [] for s in sources}
    waited = settle(args.idle_below, args.idle_wait)
    load = os.getloadavg()
    with acquire() as stack:
        client = make_redis_client(stack.redis_url, password=None, timeout_ms=10_000)
        load_command(client, prefix="", file=None, n_cards=CARDS)
        for source in sources:  # a first, uncounted round: bytecode compiled, files cached
            one_round(stack, source, events, args.fresh_group)
        for _ in range(args.rounds):
            for source in sources:
                runs[str(source)].append(one_round(stack, source, events, args.fresh_group))
    imports = {str(s): import_costs(s, 12) for s in sources} if args.imports else {}
    print(
        f"waited {waited:.0f} s for the load average to fall under {args.idle_below}; "
        f"load average before {load[0]:.1f}, after {os.getloadavg()[0]:.1f}; "
        f"{os.cpu_count()} cores"
    )
    for source, rows in runs.items():
        medians = {
            key: statistics.median(r[key] for r in rows) for key in ("assigned_s", "first_output_s")
        }
        spread = {
            key: (min(r[key] for r in rows), max(r[key] for r in rows))
            for key in ("assigned_s", "first_output_s")
        }
        print(f"{source}: {len(rows)} rounds, median (min-max)")
        for key, value in medians.items():
            low, high = spread[key]
            print(f"  {key:16} {value:.3f} s ({low:.3f}-{high:.3f})")
        if source in imports:
            costs = imports[source]
            top = ", ".join(f"{n} {ms:.0f}" for n, ms in costs["top_ms"])
            print(f"  imports of `streamer version`: {costs['total_ms']:.0f} ms; top (ms): {top}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "idle_wait_s": round(waited, 1),
                "loadavg_before": load,
                "loadavg_after": os.getloadavg(),
                "events": args.events,
                "fresh_group": args.fresh_group,
                "runs": runs,
                "imports": imports,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
