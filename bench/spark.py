"""Spark local[2] against one process: scoring and feature building, rows/s and memory.

Run: PYTHONPATH=. .venv/bin/python bench/spark.py [--events 2000000] [--cores 2]
     [--out bench/results/spark.json]

Starts a redis-server of its own with the synthetic snapshot (3,000 cards, 300
merchants), writes ``--events`` synthetic TransactionEvents to Parquet (a topic dump: each
card in one of 3 partitions, with partition and offset columns), then times, each as a
whole run that writes Parquet:

- ``streamer score-file`` (one process) and ``python -m streamer.spark score``'s code path
  (``streamer.spark.score`` on a ``local[N]`` session, written with ``df.write``);
- ``streamer features build`` and ``streamer.spark.build_features``;
- Spark's start-up: the session, and one small scoring job (1,000 events) on it.

Memory: the single-process runs' peak RSS (``ru_maxrss`` of the child), and the peak RSS
(``VmHWM``) of every Spark Python worker, sampled every 0.2 s. The per-core figure is the
rows/s divided by the cores the run used (one for a single process, N for Spark). On one
machine of 2 cores this shows the per-core cost, not a cluster's speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from streamer.dev.devstack.redis import RedisServer
from streamer.dev.synth import generate_events, make_population

REPO = Path(__file__).resolve().parents[1]
START_MS = 1_764_000_000_000


def write_events(path: Path, count: int, seed: int = 21) -> None:
    """``count`` events as a topic dump, written a million at a time (bounded memory)."""
    pop = make_population(7, 3000, 300)
    writer = None
    offsets = [0, 0, 0]
    rng = random.Random(seed)
    for start in range(0, count, 500_000):
        n = min(500_000, count - start)
        events = generate_events(pop, n, seed=rng.randrange(1 << 30), start_ms=START_MS)
        for e in events:
            part = int(e["card_id"].rsplit("-", 1)[-1]) % 3
            e["partition"], e["offset"] = part, offsets[part]
            offsets[part] += 1
        table = pa.Table.from_pylist(events)
        table = table.set_column(
            table.schema.get_field_index("event_time"),
            "event_time",
            table["event_time"].cast(pa.timestamp("ms", tz="UTC")),
        )
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=100_000)
    if writer is not None:
        writer.close()


def one_process(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """A streamer command as a child process: wall seconds and the child's peak RSS."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen([sys.executable, "-m", "streamer", *args], env=env, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            err.seek(0)
            raise SystemExit(f"streamer {' '.join(args)} failed: {err.read()[-2000:]!r}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}


class WorkerMemory:
    """The peak RSS (VmHWM) of every PySpark Python worker process, sampled in a thread."""

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def _sample(self) -> None:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
                if b"pyspark.daemon" not in cmdline and b"pyspark.worker" not in cmdline:
                    continue
                status = (proc / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    kb = float(line.split()[1])
                    pid = int(proc.name)
                    self.peaks[pid] = max(self.peaks.get(pid, 0.0), kb / 1024)


def spark_runs(args: argparse.Namespace, events: Path, small: Path, env: dict[str, str]) -> Any:
    os.environ.update(env)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    from streamer.config.loader import load_settings
    from streamer.spark import build_features, score

    started = time.monotonic()
    spark = (
        SparkSession.builder.master(f"local[{args.cores}]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    session_s = time.monotonic() - started
    settings = load_settings()
    out = Path(args.work)
    started = time.monotonic()
    score(spark.read.parquet(str(small)), settings=settings).write.parquet(str(out / "s0"))
    first_job_s = time.monotonic() - started
    figures: dict[str, Any] = {"session_start_s": session_s, "small_job_s": first_job_s}
    with WorkerMemory() as memory:
        started = time.monotonic()
        score(spark.read.parquet(str(events)), settings=settings).write.parquet(str(out / "s1"))
        figures["score_s"] = time.monotonic() - started
        started = time.monotonic()
        built = build_features(spark.read.parquet(str(events)), settings=settings)
        built.write.parquet(str(out / "f1"))
        figures["features_s"] = time.monotonic() - started
    figures["worker_peak_rss_mb"] = sorted(round(v, 1) for v in memory.peaks.values())
    spark.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "spark.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as work:
        args.work = work
        run(args, Path(work))


def run(args: argparse.Namespace, work: Path) -> None:
    redis = RedisServer(work / "redis")
    redis.start()
    try:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")},
            "STREAMER_REDIS_URL": redis.url,
            "STREAMER_MODELS_DIR": str(REPO / "models"),
        }
        subprocess.run(
            [sys.executable, "-m", "streamer", "features", "load", "--synthetic"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        events, small = work / "events.parquet", work / "small.parquet"
        write_events(events, args.events)
        write_events(small, 1000, seed=5)
        single_score = one_process(["score-file", str(events), str(work / "o.parquet")], env)
        single_build = one_process(["features", "build", str(events), "--out",
                                    str(work / "f.parquet")], env)  # fmt: skip
        spark = spark_runs(args, events, small, env)
    finally:
        redis.stop()
    n = args.events
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.platform()}",
        "load_average_at_end": os.getloadavg(),
        "command": " ".join(["bench/spark.py", *sys.argv[1:]]),
        "events": n,
        "spark_cores": args.cores,
        "score_file": {**single_score, "rows_per_s": n / single_score["seconds"]},
        "features_build": {**single_build, "rows_per_s": n / single_build["seconds"]},
        "spark": {
            **spark,
            "score_rows_per_s": n / spark["score_s"],
            "score_rows_per_s_per_core": n / spark["score_s"] / args.cores,
            "features_rows_per_s": n / spark["features_s"],
            "features_rows_per_s_per_core": n / spark["features_s"] / args.cores,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
