"""``make bench``: streamer against a raw passthrough and a naive per-event scorer.

All contenders run on the local stack (real broker, real Redis), one after the other, on
the same events. Each gets its own input topic holding the same pre-encoded backlog,
then the same events again at fixed rates:

- throughput: backlog events / time between the first and last output appended (steady),
  and / time from process start to the last output (start-up cost included);
- CPU per event (the processes' user + system time while draining) and peak RSS per
  process, read from /proc (``procstat.py``);
- end-to-end latency at each fixed rate (1,000/s, and half the first contender's steady
  rate): output append time (LogAppendTime, i.e. broker acknowledgement) minus the event
  time stamped when the event was sent, with a per-stage breakdown (``stages.py``).

Every contender starts with no velocity state in Redis: a state an earlier run left holds
positions above a fresh topic's offsets, and its events would all be replays (the state
not written), not the path a live stream takes.

``--pin`` puts the contender on one core and everything else this benchmark starts (the
broker, Redis, the sender and the reader) on the other, so a contender's latency tail is
its own and not the stack's (``taskset``'s effect: affinity is inherited by every thread
started later). Processes outside the benchmark still share both cores.

**A warm broker for every contender.** A fresh broker (the stack this benchmark starts when
``KAFKA_BOOTSTRAP_SERVERS`` is not set) is slow for its first seconds of traffic: its JVM
is not yet compiled hot and the group coordinator is still loading (librdkafka logs
"Coordinator load in progress"). Whichever contender ran first met that broker and paid
for it in its first fixed-rate phase, hundreds of milliseconds of p99 that were the
broker's, not the contender's. So before the first contender a throwaway passthrough
drains a backlog and then takes the fixed rate, 5 s at a time, until it keeps up, on its
own topics; its figures are discarded (``--no-warm-up`` skips it).

``--source DIR`` runs another checkout's ``streamer`` (the before numbers) with the same
flags. ``--redis-cluster`` puts the features and velocity state on a 3-primary,
3-replica Redis Cluster on this machine (``STREAMER_REDIS_MODE=cluster``) instead of the
stack's one redis-server. Prints tables and writes JSON (bench/results/pipeline.json).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import contenders  # noqa: E402
import procstat  # noqa: E402
import stages  # noqa: E402
from contenders import CONTENDERS, Contender, Launched  # noqa: E402
from phases import Collector, Row, forget_velocity, send, topics  # noqa: E402

from streamer.dev.devstack.stack import Endpoints, acquire  # noqa: E402
from streamer.dev.synth import generate_events, make_population  # noqa: E402
from streamer.features.loader import load_command  # noqa: E402

CARDS = 200_000
"""The backlog is a day's traffic squeezed into seconds of event time: spread over many
cards, so that ordinary cards transact a few times at most and the velocity state (and
the share of flagged events that get reasons) sees the traffic of a real minute."""
from streamer.features.redis_client import make_redis_client  # noqa: E402

WARM_UP_BACKLOG, WARM_UP_S, WARM_UP_PHASES = 20_000, 5, 8
"""The warm-up's passthrough drains this many events, then takes this many seconds of the
fixed rate, again until it keeps up, this many times at most: on a fresh broker its p50
at 1,000/s was still a second after 15 s, on a warm one 10 to 12 ms."""
WARM = (25.0, 100.0)
"""p50 and p99 (ms) at the fixed rate of a passthrough on a warm broker, with room for a
loaded machine: a warm broker gave 10 to 12 / 16 to 52 ms in the runs of docs/performance.md."""

console = Console(width=180)


class Phases:
    """One contender's run: its topics, clients and processes, phase after phase."""

    def __init__(self, stack: Endpoints, contender: Contender, source: Path) -> None:
        self.stack, self.contender, self.source = stack, contender, source
        admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
        self.tag = uuid.uuid4().hex[:6]
        self.input, self.output = f"bench-{self.tag}-in", f"bench-{self.tag}-out"
        topics(admin, [self.input, self.input + ".dlq"], 3)
        topics(admin, [self.output], 3, log_append=True)
        self.producer = Producer(
            {"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 5, "compression.type": "lz4"}
        )
        # At a fixed rate each event is sent at once: the upstream's linger is not ours.
        self.live_producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 0})
        consumer = Consumer(
            {
                "bootstrap.servers": stack.kafka_bootstrap,
                "group.id": f"bench-read-{self.tag}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([self.output])
        self.consumer = consumer
        self.collector = Collector(consumer, [REPO / "schemas", source / "schemas"])
        self.launched = Launched([])

    def drain(self, backlog: list[dict[str, Any]]) -> dict[str, Any]:
        """Throughput, start-up cost, CPU per event and RSS while draining ``backlog``."""
        send(self.producer, self.input, backlog, sampled=self.contender.sampled)
        started_ms = time.time_ns() / 1e6
        self.launched = self.contender.make()(
            self.stack, self.input, self.output, f"bench-{self.tag}", self.source
        )
        first: dict[str, float] = {}

        def on_first() -> None:
            first["ms"], first["cpu"] = time.time_ns() / 1e6, self._cpu()

        rows = self.collector.collect(
            len(backlog), 600, self.launched.procs, times=False, on_first=on_first
        )
        cpu = self._cpu()
        buckets, sums = self._scrape()
        counts = {stage: max(b.values(), default=0.0) for stage, b in buckets.items()}
        batches = counts.get("enrich", 0.0)  # one feature MGET per batch
        commits = counts.get(stages.COMMIT, 0.0)  # exactly-once: transactions committed
        trips = (batches + counts.get("velocity_write", 0.0)) / batches if batches else None
        threads: dict[str, float] = {}
        for proc in self.launched.procs:
            for name, seconds in procstat.thread_cpu(proc.pid).items():
                threads[name] = round(threads.get(name, 0.0) + seconds, 2)
        appended = np.array([r[0] for r in rows], dtype=np.float64)
        span_s = (appended.max() - appended.min()) / 1000 if appended.size > 1 else float("nan")
        total_s = (appended.max() - started_ms) / 1000 if appended.size else float("nan")
        return {
            "events": len(rows),
            "events_per_s": len(rows) / span_s if span_s > 0 else float("nan"),
            "events_per_s_from_start": len(rows) / total_s if total_s > 0 else float("nan"),
            "first_output_s": (first.get("ms", float("nan")) - started_ms) / 1000,
            "cpu_s_total": cpu,
            "cpu_us_per_event": 1e6 * cpu / max(len(rows), 1),
            "cpu_us_per_event_steady": 1e6 * (cpu - first.get("cpu", 0.0)) / max(len(rows), 1),
            "cpu_s_by_thread": threads,
            "redis_round_trips_per_batch": trips,
            "transactions": commits or None,
            "batches_per_transaction": batches / commits if commits else None,
            "commit_ms_mean": 1000 * sums.get(stages.COMMIT, 0.0) / commits if commits else None,
            "complete": len(rows) >= len(backlog),
        }

    def fixed_rate(self, events: list[dict[str, Any]], rate: float) -> dict[str, Any]:
        """End-to-end latency and its breakdown at ``rate`` events/s."""
        before = self._scrape()
        send(self.live_producer, self.input, events, rate, self.contender.sampled)
        rows: list[Row] = self.collector.collect(len(events), 120, self.launched.procs, times=True)
        after = self._scrape()
        breakdown = stages.per_event(rows)
        end_to_end = breakdown.get("end to end", {})
        return {
            "rate": rate,
            "events": len(rows),
            "p50_ms": end_to_end.get("p50_ms", float("nan")),
            "p99_ms": end_to_end.get("p99_ms", float("nan")),
            "per_event": breakdown,
            "per_batch": stages.per_batch(before, after),
            "complete": len(rows) >= len(events),
        }

    def stop(self) -> list[float]:
        """Peak RSS (MB) of each process (read before it exits), then stop everything."""
        rss = [mb for p in self.launched.procs for mb in procstat.peak_rss_mb(p.pid)]
        for proc in self.launched.procs:
            proc.terminate()
        for proc in self.launched.procs:
            proc.wait(60)
        self.consumer.close()
        return rss

    def _cpu(self) -> float:
        return sum(procstat.cpu_seconds(p.pid) for p in self.launched.procs)

    def _scrape(self) -> tuple[stages.Histograms, dict[str, float]]:
        merged: tuple[stages.Histograms, dict[str, float]] = ({}, {})
        for port in self.launched.ports:
            buckets, sums = stages.scrape(port)
            for stage, counts in buckets.items():
                into = merged[0].setdefault(stage, {})
                for bound, count in counts.items():
                    into[bound] = into.get(bound, 0.0) + count
            for stage, total in sums.items():
                merged[1][stage] = merged[1].get(stage, 0.0) + total
        return merged


def run_contender(
    name: str,
    contender: Contender,
    stack: Endpoints,
    backlog: list[dict[str, Any]],
    steady: tuple[float, list[dict[str, Any]]],
    half: Callable[[float], tuple[float, list[dict[str, Any]]]],
    source: Path,
) -> dict[str, Any]:
    """Drain, then the fixed rates: ``steady``, and ``half(own max)`` unless skipped."""
    phases = Phases(stack, contender, source)
    console.print(f"[bold]{name}[/]: draining a backlog of {len(backlog):,} events…")
    try:
        result: dict[str, Any] = {"contender": name, **phases.drain(backlog), "rates": []}
        rates = [steady]
        if contender.half_rate and result["complete"]:
            rates.append(half(result["events_per_s"]))
        for rate, events in rates:
            console.print(f"[bold]{name}[/]: {len(events):,} events at {rate:,.0f}/s…")
            result["rates"].append(phases.fixed_rate(events, rate))
    finally:
        result["peak_rss_mb"] = phases.stop()
    result["complete"] = result["complete"] and all(r["complete"] for r in result["rates"])
    return result


def warm_up(
    stack: Endpoints, backlog: list[dict[str, Any]], live: tuple[float, list[dict[str, Any]]]
) -> None:
    """Warm the broker (see the module's docstring): a passthrough drains ``backlog``, then
    takes the fixed-rate ``live`` events again until it keeps up (``WARM``), a few times at
    most; one line is printed, nothing is kept."""
    started = time.monotonic()
    phases = Phases(stack, CONTENDERS["passthrough (ceiling)"], REPO)
    rate, events = live
    seen: list[str] = []
    try:
        drained = phases.drain(backlog)
        for _ in range(WARM_UP_PHASES):
            steady = phases.fixed_rate(events, rate)
            seen.append(f"{steady['p50_ms']:.0f} / {steady['p99_ms']:.0f}")
            if steady["p50_ms"] <= WARM[0] and steady["p99_ms"] <= WARM[1]:
                break
    finally:
        phases.stop()
    console.print(
        f"warming the broker: a passthrough drained {drained['events']:,} events at "
        f"{drained['events_per_s']:,.0f}/s, then {len(events):,} at {rate:,.0f}/s "
        f"{len(seen)} time(s) (p50 / p99 ms: {'; '.join(seen)}), "
        f"{time.monotonic() - started:.0f} s; discarded"
    )


def _report(results: list[dict[str, Any]], title: str) -> None:
    base = next((r for r in results if r["contender"] == "streamer"), results[0])
    table = Table(title=title)
    columns = ("contender", "events/s", "vs streamer", "from start", "first out s", "CPU µs/ev")
    for column in (
        *columns,
        "Redis trips/batch",
        "RSS MB",
        "p50 / p99 ms at each rate",
        "complete",
    ):
        table.add_column(column, justify="left" if column == "contender" else "right")
    for r in results:
        r["throughput_vs_streamer"] = r["events_per_s"] / base["events_per_s"]
        latency = "; ".join(
            f"{x['rate']:,.0f}/s: {x['p50_ms']:.0f} / {x['p99_ms']:.0f}" for x in r["rates"]
        )
        table.add_row(
            r["contender"],
            f"{r['events_per_s']:,.0f}",
            f"{r['throughput_vs_streamer']:.2f}x",
            f"{r['events_per_s_from_start']:,.0f}",
            f"{r['first_output_s']:.2f}",
            f"{r['cpu_us_per_event']:.0f}",
            "-"
            if r.get("redis_round_trips_per_batch") is None
            else f"{r['redis_round_trips_per_batch']:.2f}",
            "/".join(f"{mb:.0f}" for mb in r["peak_rss_mb"]),
            latency,
            "yes" if r["complete"] else "NO",
        )
    console.print(table)
    for r in results:
        if r.get("transactions"):
            console.print(
                f"{r['contender']}, draining: {r['transactions']:.0f} transactions of "
                f"{r['batches_per_transaction']:.1f} batches, commit {r['commit_ms_mean']:.1f} ms "
                "on average"
            )
    for r in results:
        for x in r["rates"]:
            stages_table = Table(title=f"{r['contender']} at {x['rate']:,.0f}/s")
            for column in ("span", "p50 ms", "p99 ms"):
                stages_table.add_column(column)
            for span, v in {**x["per_event"], **_batch_rows(x["per_batch"])}.items():
                stages_table.add_row(span, f"{v['p50_ms']:.2f}", f"{v['p99_ms']:.2f}")
            console.print(stages_table)


def _batch_rows(per_batch: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    def each(stage: str) -> str:
        return "per event" if stage == stages.ACKNOWLEDGED else "per batch"

    return {f"{s} ({each(s)}, mean {v['mean_ms']:.2f})": v for s, v in per_batch.items()}


def _on_a_cluster(stack: Endpoints, cleanup: contextlib.ExitStack) -> Endpoints:
    """``stack`` with its Redis replaced by a fresh 6-node cluster (stopped by ``cleanup``)."""
    import tempfile

    from streamer.dev.devstack.redis_cluster import RedisClusterGroup

    cluster = RedisClusterGroup(Path(cleanup.enter_context(tempfile.TemporaryDirectory())))
    cleanup.callback(cluster.stop)
    cluster.start()
    contenders.OVERRIDES.update(STREAMER_REDIS_URL=cluster.url, STREAMER_REDIS_MODE="cluster")
    return dataclasses.replace(stack, redis_url=cluster.url)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="backlog size per contender")
    parser.add_argument("--rate", type=float, default=1_000.0, help="steady rate for latency")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each rate")
    parser.add_argument("--half-rate", type=float, default=0.0, help="default: half the first")
    parser.add_argument("--only", action="append", help="only these contenders (name prefix)")
    parser.add_argument("--exact", action="store_true", help="--only names are whole names")
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE for streamers")
    parser.add_argument("--source", type=Path, default=REPO, help="the streamer tree to run")
    parser.add_argument("--redis-cluster", action="store_true", help="Redis Cluster, 3 shards")
    parser.add_argument("--pin", action="store_true", help="contender on CPU 1, the rest on 0")
    parser.add_argument("--no-warm-up", action="store_true", help="no throwaway first run")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "pipeline.json")
    args = parser.parse_args()
    contenders.OVERRIDES.update(item.split("=", 1) for item in args.set)
    if args.pin:  # before any thread or process starts: they inherit this affinity
        os.sched_setaffinity(0, {0})
        contenders.PIN.add(1)
    population = make_population(7, CARDS)
    backlog = generate_events(population, args.events, seed=101, start_ms=0)
    steady = generate_events(population, int(args.rate * args.seconds), seed=202, start_ms=0)
    chosen = {
        n: c
        for n, c in CONTENDERS.items()
        if not args.only or any(n == o if args.exact else n.startswith(o) for o in args.only)
    }
    results: list[dict[str, Any]] = []
    load = os.getloadavg()
    with acquire() as shared, contextlib.ExitStack() as cleanup:
        stack = _on_a_cluster(shared, cleanup) if args.redis_cluster else shared
        mode = "cluster" if args.redis_cluster else "single"
        client = make_redis_client(stack.redis_url, password=None, timeout_ms=10_000, mode=mode)
        load_command(client, prefix="", file=None, n_cards=CARDS)
        fixed: list[float] = [args.half_rate] if args.half_rate else []

        def half(own_max: float) -> tuple[float, list[dict[str, Any]]]:
            """Half the first contender's maximum, the same rate for all that follow."""
            fixed.append(fixed[0] if fixed else own_max / 2)
            count = int(fixed[0] * args.seconds)
            return fixed[0], generate_events(population, count, seed=303, start_ms=0)

        if not args.no_warm_up:
            warming = generate_events(population, WARM_UP_BACKLOG, seed=404, start_ms=0)
            live = (args.rate, warming[: int(args.rate * WARM_UP_S)])
            warm_up(stack, warming, live)
        for name, contender in chosen.items():
            forget_velocity(client)  # every contender takes the live path, not replays
            results.append(
                run_contender(
                    name, contender, stack, backlog, (args.rate, steady), half, args.source
                )
            )
    title = (
        f"{args.events:,}-event backlog, {args.source}; load before {load[0]:.1f} "
        f"({platform.machine()}, {os.cpu_count()} cores, broker and Redis on this machine)"
    )
    _report(results, title)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "source": str(args.source),
                "loadavg_before": load,
                "loadavg_after": os.getloadavg(),
                "overrides": contenders.OVERRIDES,
                "pinned": args.pin,
                "warmed_up": not args.no_warm_up,
                "events": args.events,
                "results": results,
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.json}")
    return 0 if all(r["complete"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
