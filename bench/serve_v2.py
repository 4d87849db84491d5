"""Benchmark of ``streamer serve``'s protocols: /v1 against /v2 REST and /v2 gRPC, one worker.

1. Open loop at ``--rate`` requests/s of one transaction each (Poisson arrivals), in turn
   over ``/v1/score``, ``/v2/models/fraud-gbt/infer`` (JSON tensors) and gRPC ``ModelInfer``
   (``raw_input_contents``, as tritonclient.grpc sends): client latency percentiles (from
   the scheduled send to the last byte, so a late send counts), and the server's CPU per
   request.
2. Closed loop with ``--connections`` callers sending batches of ``--batch`` transactions:
   the maximum transactions/s over REST (/v2 JSON, and /v1/score:batch beside it) and gRPC.

All three clients are Python asyncio (aiohttp, grpc.aio) in one process, so they cost the
same kind of client time; the server and the client share the machine's cores.

Usage: python bench/serve_v2.py --redis-url URL [--rate 500] [--seconds 20]
(or REDIS_URL; `make dev-up && source .dev/env` starts one). JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import httpx
import numpy as np
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.procstat import cpu_seconds  # noqa: E402
from bench.serve import PREFIX  # noqa: E402
from streamer.dev import synth  # noqa: E402
from streamer.dev.devstack.processes import free_port  # noqa: E402
from streamer.features.loader import load_feature_set, synthetic_features  # noqa: E402
from streamer.serve.oip import grpc_predict_v2_pb2 as pb  # noqa: E402
from streamer.serve.oip import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402
from streamer.serve.oip.tensors import encode_bytes, input_fields  # noqa: E402

MODEL = "fraud-gbt"
Send = Callable[[Any], Awaitable[None]]


def events(n: int) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    pop = synth.make_population(7, n_cards=5000, n_merchants=500)
    out = synth.generate_events(pop, n, seed=3, start_ms=now - 60_000, rate_per_s=n / 50)
    for event in out:  # a tensor has no per-row null
        for field in input_fields():
            if event[field.name] is None:
                event[field.name] = "" if field.datatype == "BYTES" else False
    return out


def v2_json(rows: list[dict[str, Any]]) -> bytes:
    inputs = [
        {
            "name": f.name,
            "datatype": f.datatype,
            "shape": [len(rows)],
            "data": [r[f.name] for r in rows],
        }
        for f in input_fields()
    ]
    return json.dumps(
        {"inputs": inputs, "outputs": [{"name": "score"}, {"name": "decision"}]}
    ).encode()


def grpc_request(rows: list[dict[str, Any]]) -> Any:
    request = pb.ModelInferRequest(model_name=MODEL)
    kinds = {"BOOL": "?", "INT32": "<i4", "INT64": "<i8"}
    for f in input_fields():
        request.inputs.add(name=f.name, datatype=f.datatype, shape=[len(rows)])
        values = [r[f.name] for r in rows]
        if f.datatype == "BYTES":
            raw = encode_bytes([v.encode() for v in values])
        else:
            raw = np.asarray(values, dtype=kinds[f.datatype]).tobytes()
        request.raw_input_contents.append(raw)
    request.outputs.add(name="score")
    request.outputs.add(name="decision")
    return request


def payload(name: str, rows: list[dict[str, Any]]) -> Any:
    """What ``name``'s sender sends for ``rows``, built before the clock starts."""
    if name == "v2_rest":
        return v2_json(rows)
    if name == "v2_grpc":
        return grpc_request(rows)
    return json.dumps(rows[0] if len(rows) == 1 else {"events": rows}).encode()


def senders(session: aiohttp.ClientSession, url: str, stub: Any) -> dict[str, Send]:
    async def post(path: str, body: bytes) -> None:
        async with session.post(url + path, data=body, headers=_JSON) as response:
            await response.read()
            assert response.status == 200, response.status

    async def v1(body: Any) -> None:
        await post("/v1/score:batch" if body.startswith(b'{"events"') else "/v1/score", body)

    async def v2_rest(body: Any) -> None:
        await post(f"/v2/models/{MODEL}/infer", body)

    async def v2_grpc(request: Any) -> None:
        await stub.ModelInfer(request)

    return {"v1": v1, "v2_rest": v2_rest, "v2_grpc": v2_grpc}


_JSON = {"content-type": "application/json"}


async def open_loop(send: Send, payloads: list[Any], rate: float, seconds: float) -> dict[str, Any]:
    """Poisson arrivals at ``rate``/s for ``seconds``: latency from the scheduled send."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    tasks = []
    rng = random.Random(1)
    kinds: Counter[str] = Counter()

    async def one(at: float, body: Any) -> None:
        nonlocal errors
        try:
            await send(body)
            latencies.append(loop.time() - at)
        except Exception as exc:  # noqa: BLE001  # counted, not fatal: the figure says how many
            errors += 1
            kinds[type(exc).__name__ + ": " + str(exc)[:120]] += 1

    start = loop.time() + 0.1
    at, i = start, 0
    while at < start + seconds:
        await asyncio.sleep(max(0.0, at - loop.time()))
        tasks.append(asyncio.create_task(one(at, payloads[i % len(payloads)])))
        at += rng.expovariate(rate)
        i += 1
    await asyncio.gather(*tasks)
    ms = np.asarray(latencies) * 1000
    return {
        "requests": i,
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "achieved_rps": round(len(latencies) / seconds, 1),
        "error_kinds": dict(kinds.most_common(3)),
    }


async def closed_loop(send: Send, payloads: list[Any], callers: int, seconds: float) -> int:
    """``callers`` loops sending ``payloads`` back to back for ``seconds``: requests done."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    done = [0]

    async def caller(offset: int) -> None:
        i = offset
        while loop.time() < end:
            await send(payloads[i % len(payloads)])
            done[0] += 1
            i += 1

    await asyncio.gather(*(caller(c * 7) for c in range(callers)))
    return done[0]


async def run(port: int, grpc_port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    pool = events(5000)
    singles = {n: [payload(n, [r]) for r in pool] for n in ("v1", "v2_rest", "v2_grpc")}
    batches = {
        n: [payload(n, pool[i : i + args.batch]) for i in range(0, len(pool), args.batch)]
        for n in singles
    }
    report: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=256)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        wanted = args.protocols.split(",")
        sends = {
            n: f
            for n, f in senders(session, f"http://127.0.0.1:{port}", stub).items()
            if n in wanted
        }
        for name, send in sends.items():  # warm-up: connections, first batches
            await closed_loop(send, singles[name], 8, 1.0)
        for name, send in sends.items():
            before = cpu_seconds(pid)
            result = await open_loop(send, singles[name], args.rate, args.seconds)
            cpu = cpu_seconds(pid) - before
            result["server_cpu_ms_per_request"] = round(cpu * 1000 / result["requests"], 3)
            report[f"open_loop_{name}"] = result
            print(name, "open loop", json.dumps(result), flush=True)
        for name, send in sends.items():
            seconds = args.seconds / 2
            before = cpu_seconds(pid)
            done = await closed_loop(send, batches[name], args.connections, seconds)
            cpu = cpu_seconds(pid) - before
            result = {
                "requests": done,
                "transactions_per_s": round(done * args.batch / seconds, 1),
                "server_cpu_us_per_transaction": round(cpu * 1e6 / (done * args.batch), 1),
            }
            report[f"batch_{args.batch}_{name}"] = result
            print(name, f"batches of {args.batch}", json.dumps(result), flush=True)
    return report


def serve(stack: ExitStack, redis_url: str, grpc_port: int) -> tuple[int, int]:
    """``streamer serve`` with gRPC on ``grpc_port``: its HTTP port and pid, once healthy."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env |= {"STREAMER_REDIS_URL": redis_url, "STREAMER_REDIS_KEY_PREFIX": PREFIX,
            "STREAMER_MODELS_DIR": str(REPO / "models"), "PYTHONPATH": str(REPO),
            "STREAMER_SERVE_GRPC_PORT": str(grpc_port)}  # fmt: skip
    cmd = [sys.executable, "-m", "streamer", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.DEVNULL)
    stack.callback(lambda: (proc.terminate(), proc.wait(30)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
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
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--protocols", default="v1,v2_rest,v2_grpc")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/serve-v2.json")
    args = parser.parse_args()
    if not args.redis_url:
        raise SystemExit("give --redis-url or REDIS_URL (make dev-up; source .dev/env)")
    client = redis.Redis.from_url(args.redis_url)
    load_feature_set(client, PREFIX, synthetic_features(7, int(time.time() * 1000)))
    grpc_port = free_port()
    report: dict[str, Any] = {
        "at": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
        "command": " ".join(["python", *sys.argv]),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    with ExitStack() as stack:
        port, pid = serve(stack, args.redis_url, grpc_port)
        report |= asyncio.run(run(port, grpc_port, pid, args))
    keys = list(client.scan_iter(match=f"{PREFIX}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    report["load_average_end"] = os.getloadavg()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
