"""Profile ``streamer run`` draining a backlog with py-spy, and print the top of it.

``python bench/profile_run.py [--events 60000] [--rate 100] [--source DIR]``: writes a backlog to a
fresh topic, starts ``streamer run`` (from ``--source``, default this checkout) under
``py-spy record`` (sampling, ``--rate`` 100 Hz, native frames off), stops it once every event was
scored, and prints its per-batch stage means and velocity outcomes (from its metrics) and
the functions with the most samples, self and inclusive. Velocity states left in Redis by
earlier runs are deleted first: their positions would make every event a replay. The raw
collapsed stacks stay in ``build/profiles/profile-<tag>.txt`` (open in speedscope).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARDS = 200_000  # as bench/pipeline.py: its flag rate, so its share of reason codes
sys.path.insert(0, str(REPO))

import procstat  # noqa: E402
import redis  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from contenders import free_ports  # noqa: E402
from phases import Collector, forget_velocity, send, topics  # noqa: E402

from streamer.dev.devstack.stack import acquire  # noqa: E402
from streamer.dev.synth import generate_events, make_population  # noqa: E402
from streamer.features.loader import load_command  # noqa: E402


def summarize(collapsed: Path, top: int) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f.split(" (")[0] + " " + f.split("/")[-1].rstrip(")") for f in stack.split(";")]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples", "self %   function (file:line)"]
    lines += [f"{100 * n / total:5.1f}  {f}" for f, n in own.most_common(top)]
    lines += ["inclusive %"]
    lines += [f"{100 * n / total:5.1f}  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


def drain_metrics(port: int) -> str:
    """The run's per-batch stage means and velocity outcomes, from its /metrics: which
    stages the time went to, and whether the velocity state took the live path (``new``)
    or found the events already seen (``replay``: a state left in Redis by an earlier run
    over the same cards and lower offsets)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    except OSError as exc:
        return f"no metrics ({exc})"
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    lines = []
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        stage = re.search(r'stage="([a-z_]+)"', name)
        if name.startswith("streamer_stage_duration_seconds_sum") and stage:
            sums[stage[1]] = float(value)
        elif name.startswith("streamer_stage_duration_seconds_count") and stage:
            counts[stage[1]] = float(value)
        elif name.startswith("streamer_velocity_events_total"):
            lines.append(f"{name} {float(value):.0f}")
    means = [f"{s} {1000 * sums[s] / counts[s]:.2f}" for s in sums if counts.get(s)]
    return "per batch, mean ms: " + ", ".join(means) + "\n" + "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--source", type=Path, default=REPO)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE for streamer")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    tag = uuid.uuid4().hex[:6]
    out_file = REPO / "build" / "profiles" / f"profile-{tag}.txt"
    with acquire() as stack:
        client = redis.Redis.from_url(stack.redis_url)
        load_command(client, prefix="", file=None)
        forgotten = forget_velocity(client)  # the live path, not replays of an earlier run
        admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
        inp, out = f"prof-{tag}-in", f"prof-{tag}-out"
        topics(admin, [inp, inp + ".dlq"], 3)
        topics(admin, [out], 3, log_append=True)
        population = make_population(7, CARDS)  # bench/pipeline.py's backlog
        backlog = generate_events(population, args.events, seed=101, start_ms=0)
        send(Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 5}), inp, backlog)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
        env |= {
            "STREAMER_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
            "STREAMER_REDIS_URL": stack.redis_url,
            "STREAMER_INPUT_TOPIC": inp,
            "STREAMER_OUTPUT_TOPIC": out,
            "STREAMER_GROUP_ID": f"prof-{tag}",
            "STREAMER_LOG_LEVEL": "WARNING",
            "STREAMER_METRICS_PORT": str(port := free_ports(1)),
            "STREAMER_MODELS_DIR": str(args.source / "models"),
            "PYTHONPATH": str(args.source),
            **dict(item.split("=", 1) for item in args.set),
        }
        out_file.parent.mkdir(parents=True, exist_ok=True)
        command = [spy, "record", "--nonblocking", "--format", "raw", "--rate", str(args.rate)]
        command += ["-o", str(out_file)]
        proc = subprocess.Popen(  # cwd: ``-m`` puts it first on sys.path, before PYTHONPATH
            [*command, "--", sys.executable, "-m", "streamer", "run"], env=env, cwd=args.source
        )
        consumer = Consumer(
            {"bootstrap.servers": stack.kafka_bootstrap, "group.id": f"prof-read-{tag}"}
            | {"auto.offset.reset": "earliest"}
        )
        consumer.subscribe([out])
        started = time.monotonic()
        rows = Collector(consumer, []).collect(args.events, 600, [proc], times=False)
        print(f"{len(rows)} scored in {time.monotonic() - started:.1f}s (start-up included)")
        print(f"velocity states of earlier runs deleted first: {forgotten}")
        print(drain_metrics(port))
        for child in procstat.family(proc.pid)[1:]:
            os.kill(child, signal.SIGTERM)
        proc.wait(120)
        consumer.close()
    print(summarize(out_file, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
