"""Benchmark of ``streamer serve``: a real HTTP load against one worker and the real Redis.

1. Open loop at ``--rate`` single-event requests/s (Poisson arrivals from an asyncio client
   on raw keep-alive connections, requests pre-serialized): client latency and the server's
   own (its ``Server-Timing: app;dur=`` header) percentiles.
2. Closed loop with ``wrk`` (Debian's package) at ``--connections``: the maximum sustained
   requests/s of one worker, batching on (``--batch-wait-ms 2``) against off (``--max-batch 1``),
   and batching with no window (``--batch-wait-ms 0``: a batch is what queued meanwhile).

Both phases also report the server's CPU per request (from /proc) and its mean kernel batch
(from its ``streamer_batch_size`` metric): on one GIL, latency follows that CPU.

Usage: python bench/serve.py [--redis-url URL] [--rate 500] [--seconds 20]
(or REDIS_URL; `make dev-up && source .dev/env` starts one). JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.procstat import cpu_seconds  # noqa: E402
from streamer.dev import synth  # noqa: E402
from streamer.dev.devstack.processes import free_port  # noqa: E402
from streamer.features.loader import load_feature_set, synthetic_features  # noqa: E402

PREFIX = "bench-serve:"
CONFIGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("batching_on", ()),  # the defaults: a 2 ms window, up to 256 events
    ("batching_no_window", ("--batch-wait-ms", "0")),  # only what queued while it scored
    ("batching_off", ("--max-batch", "1")),
)


def requests(n: int, port: int) -> list[bytes]:
    """``n`` pre-serialized POST /v1/score requests of synthetic events."""
    now = int(time.time() * 1000)
    pop = synth.make_population(7, n_cards=5000, n_merchants=500)
    events = synth.generate_events(pop, n, seed=3, start_ms=now - 60_000, rate_per_s=n / 50)
    out = []
    for event in events:
        body = json.dumps(event).encode()
        head = (
            f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


IDLE_S = 2.0
"""A pooled connection idle longer than this is closed, not reused: under any server's
keep-alive timeout (uvicorn's default is 5 s), so the client never races the server's close."""


class Pool:
    """Keep-alive connections to one port: the most recently used first, none idle too long.

    A reused connection can still have been closed by the server (a restart, a limit); a
    request that got no byte of response on it is sent once more on a fresh connection,
    as HTTP clients do for a stale pooled connection.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[Any, float]] = []
        self.opened = 0
        self.retried = 0

    async def _connect(self) -> Any:
        self.opened += 1
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def _take(self) -> tuple[Any, bool]:
        while self.idle:
            conn, since = self.idle.pop()
            if time.perf_counter() - since < IDLE_S and not conn[0].at_eof():
                return conn, True
            conn[1].close()
        return await self._connect(), False

    async def exchange(self, request: bytes) -> tuple[float, float]:
        conn, reused = await self._take()
        started = time.perf_counter()
        try:
            head, body_read = await _exchange(conn, request)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            conn[1].close()
            if not reused:
                raise
            self.retried += 1
            conn = await self._connect()
            head, body_read = await _exchange(conn, request)
        client_ms = (time.perf_counter() - started) * 1000
        self.idle.append((conn, time.perf_counter()))
        server = re.search(rb"server-timing: app;dur=([\d.]+)", head, re.I)
        assert b" 200 " in head.split(b"\r\n", 1)[0], head + body_read
        return client_ms, float(server.group(1)) if server else float("nan")

    async def fill(self, n: int) -> None:
        for _ in range(n):
            self.idle.append((await self._connect(), time.perf_counter()))

    def close(self) -> None:
        for conn, _ in self.idle:
            conn[1].close()
        self.idle.clear()


async def _exchange(conn: Any, request: bytes) -> tuple[bytes, bytes]:
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
    return head, await reader.readexactly(length)


async def open_loop(port: int, rate: float, seconds: float) -> dict[str, Any]:
    """Poisson arrivals at ``rate``/s; a pool of keep-alive connections grows as needed."""
    reqs = requests(int(rate * seconds), port)
    pool = Pool(port)
    results: list[tuple[float, float]] = []
    late = 0

    async def one(request: bytes) -> None:
        results.append(await pool.exchange(request))

    await pool.fill(8)
    tasks = []
    rng = random.Random(1)
    start = time.perf_counter()
    due = 0.0
    for request in reqs:
        due += rng.expovariate(rate)
        wait = start + due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -0.005:
            late += 1
        tasks.append(asyncio.create_task(one(request)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    pool.close()
    client = np.array([r[0] for r in results])
    server = np.array([r[1] for r in results])
    pct = lambda a, q: round(float(np.percentile(a, q)), 3)  # noqa: E731
    return {
        "requests": len(results),
        "achieved_rps": round(len(results) / elapsed, 1),
        "sent_late_over_5ms": late,
        "connections_opened": pool.opened,
        "resent_on_closed_connection": pool.retried,
        "server_ms": {"p50": pct(server, 50), "p99": pct(server, 99), "max": pct(server, 100)},
        "client_ms": {"p50": pct(client, 50), "p99": pct(client, 99), "max": pct(client, 100)},
    }


def wrk(port: int, body: bytes, connections: int, seconds: int) -> dict[str, Any]:
    """wrk's sustained requests/s and latency percentiles for one request body."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body.decode())}\n"
            "done = function(summary, latency, requests)\n"
            '  io.write(string.format("non2xx=%d\\n", summary.errors.status))\nend\n'
        )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name,
         f"http://127.0.0.1:{port}/v1/score"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"\s+(50|99)%\s+([\d.]+\w+)", out))
    non2xx = int(re.search(r"non2xx=(\d+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "requests": done, "p50": lat.get("50"), "p99": lat.get("99"),
            "non_2xx": non2xx}  # fmt: skip


def _batches(port: int) -> tuple[float, float]:
    """The server's kernel calls and events so far (``streamer_batch_size`` count, sum)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = dict(re.findall(r"^streamer_batch_size_(count|sum) ([\d.e+]+)$", text, re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


def run_open_loop(port: int, rate: float, seconds: float) -> dict[str, Any]:
    return asyncio.run(open_loop(port, rate, seconds))


def measured(port: int, pid: int, run: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``run(*args)``'s figures plus the server's CPU per request and its mean kernel batch."""
    cpu_before, (calls_before, events_before) = cpu_seconds(pid), _batches(port)
    result = run(*args)
    cpu = cpu_seconds(pid) - cpu_before
    calls, events = _batches(port)
    calls, events = calls - calls_before, events - events_before
    result["server_cpu_ms_per_request"] = round(cpu * 1000 / max(result["requests"], 1), 3)
    result["mean_batch"] = round(events / calls, 2) if calls else None
    return result


def serve(stack: ExitStack, redis_url: str, *args: str) -> tuple[int, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env |= {"STREAMER_REDIS_URL": redis_url, "STREAMER_REDIS_KEY_PREFIX": PREFIX,
            "STREAMER_MODELS_DIR": str(REPO / "models"), "PYTHONPATH": str(REPO)}  # fmt: skip
    cmd = [sys.executable, "-m", "streamer", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen([*cmd, *args], env=env, stderr=subprocess.DEVNULL)
    stack.callback(lambda: (proc.terminate(), proc.wait(30)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            import httpx

            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return port, proc.pid
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("streamer serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/serve.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/serve.py needs wrk: sudo apt-get install wrk")
    with ExitStack() as stack:
        redis_url = args.redis_url
        if not redis_url:
            raise SystemExit("give --redis-url or REDIS_URL (make dev-up; source .dev/env)")
        client = redis.Redis.from_url(redis_url)
        load_feature_set(client, PREFIX, synthetic_features(7, int(time.time() * 1000)))
        body = requests(1, 0)[0].split(b"\r\n\r\n", 1)[1]
        report: dict[str, Any] = {
            "at": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
            "command": " ".join(["python", *sys.argv]),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        }
        for name, flags in CONFIGS:
            port, pid = serve(stack, redis_url, *flags)
            report[name] = {
                "open_loop": measured(port, pid, run_open_loop, port, args.rate, args.seconds),
                "wrk": measured(port, pid, wrk, port, body, args.connections, int(args.seconds)),
            }
            print(name, json.dumps(report[name]), flush=True)
        keys = list(client.scan_iter(match=f"{PREFIX}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    report["load_average_end"] = os.getloadavg()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
