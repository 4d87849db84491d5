"""Benchmark of ``streamer serve``: a real HTTP load against one worker and the real Redis.

1. Open loop at ``--rate`` single-event requests/s: Poisson arrivals from ``bench/loadgen``
   (Go, standard library only, so the client adds little delay of its own on these shared
   cores) over keep-alive connections: client latency (send to last byte) and the server's
   own (its ``Server-Timing: app;dur=`` header) percentiles.
2. Closed loop with ``wrk`` (Debian's package) at ``--connections``: the maximum sustained
   requests/s of one worker, batching on (the defaults: a batch is what queued while the
   last one was scored) against off (``--max-batch 1``), and with a 2 ms window
   (``--batch-wait-ms 2``: each batch also held open for later requests).

Both phases also report the server's CPU per request (from /proc) and its mean kernel batch
(from its ``streamer_batch_size`` metric): on one GIL, latency follows that CPU.

Usage: python bench/serve.py [--redis-url URL] [--rate 500] [--seconds 20] [--source DIR]
(or REDIS_URL; needs Go and wrk; `make dev-up && source .dev/env` starts one). JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
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

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.procstat import cpu_seconds  # noqa: E402
from streamer.dev import synth  # noqa: E402
from streamer.dev.devstack.processes import free_port  # noqa: E402
from streamer.features.loader import load_feature_set, synthetic_features  # noqa: E402

PREFIX = "bench-serve:"
CONFIGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("batching_on", ()),  # the defaults: what queued while the last batch scored, up to 256
    ("batching_window_2ms", ("--batch-wait-ms", "2")),  # each batch also held open 2 ms
    ("batching_off", ("--max-batch", "1")),
)


def bodies(n: int) -> list[bytes]:
    """``n`` single-event request bodies of synthetic events (JSON)."""
    now = int(time.time() * 1000)
    pop = synth.make_population(7, n_cards=5000, n_merchants=500)
    events = synth.generate_events(pop, n, seed=3, start_ms=now - 60_000, rate_per_s=n / 50)
    return [json.dumps(event).encode() for event in events]


def loadgen() -> Path:
    """The Go open-loop load generator (``bench/loadgen``, standard library only), built."""
    out = REPO / "build" / "loadgen"
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=REPO / "bench/loadgen", check=True)
    return out


def open_loop(port: int, rate: float, seconds: float, binary: Path) -> dict[str, Any]:
    """Poisson arrivals at ``rate``/s from the Go load generator: client and server latency."""
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as file:
        file.write(b"\n".join(bodies(int(rate * seconds))))
        file.flush()
        url = f"http://127.0.0.1:{port}/v1/score"
        args = ["-url", url, "-bodies", file.name, "-rate", str(rate), "-seconds", str(seconds)]
        out = subprocess.run([str(binary), *args], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


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


def serve(stack: ExitStack, redis_url: str, source: Path, *args: str) -> tuple[int, int]:
    """``streamer serve ARGS`` from the checkout ``source``: its port and pid."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env |= {"STREAMER_REDIS_URL": redis_url, "STREAMER_REDIS_KEY_PREFIX": PREFIX,
            "STREAMER_MODELS_DIR": str(REPO / "models"), "PYTHONPATH": str(source)}  # fmt: skip
    cmd = [sys.executable, "-m", "streamer", "serve", "--host", "127.0.0.1", "--port", str(port)]
    # cwd: ``-m`` puts the working directory first on sys.path, before PYTHONPATH.
    proc = subprocess.Popen([*cmd, *args], env=env, cwd=source, stderr=subprocess.DEVNULL)
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
    parser.add_argument(
        "--source", type=Path, default=REPO, help="serve from this checkout (a before/after pair)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/serve.py needs wrk: sudo apt-get install wrk")
    if shutil.which("go") is None:
        raise SystemExit("bench/serve.py needs Go (https://go.dev/dl) for its load generator")
    binary = loadgen()
    with ExitStack() as stack:
        redis_url = args.redis_url
        if not redis_url:
            raise SystemExit("give --redis-url or REDIS_URL (make dev-up; source .dev/env)")
        client = redis.Redis.from_url(redis_url)
        load_feature_set(client, PREFIX, synthetic_features(7, int(time.time() * 1000)))
        body = bodies(1)[0]
        report: dict[str, Any] = {
            "at": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
            "command": " ".join(["python", *sys.argv]),
            "source": str(args.source.resolve()),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        }
        for name, flags in CONFIGS:
            port, pid = serve(stack, redis_url, args.source.resolve(), *flags)
            report[name] = {
                "open_loop": measured(port, pid, open_loop, port, args.rate, args.seconds, binary),
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
