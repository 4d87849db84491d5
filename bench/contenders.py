"""The benchmark's contenders: how each is started, and on which source tree.

Every streamer variant runs ``python -m streamer run`` from ``source`` (this checkout, or
another one given with ``--source`` for before/after numbers) with its metrics server on
a free port, so the benchmark can read its stage histograms.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from streamer.dev.devstack.stack import Endpoints

BENCH = Path(__file__).resolve().parent
OVERRIDES: dict[str, str] = {}  # ``--set NAME=VALUE``: for every streamer contender
PIN: set[int] = set()  # ``--pin``: the CPUs every contender process (and its threads) runs on


def _pinned(command: list[str]) -> list[str]:
    """``command`` started under ``taskset`` when pinned: every thread it starts inherits."""
    if not PIN:
        return command
    return ["taskset", "-c", ",".join(map(str, sorted(PIN))), *command]


@dataclass
class Launched:
    """A contender's processes and the metrics ports of its streamers (none: not a streamer)."""

    procs: list[subprocess.Popen[bytes]]
    ports: list[int] = field(default_factory=list)


Launcher = Callable[[Endpoints, str, str, str, Path], Launched]


def free_ports(n: int) -> int:
    """The first of ``n`` consecutive free loopback ports (a supervisor uses port + i)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + n < 65535 and all(_free(first + i) for i in range(1, n)):
            return first


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _streamer(extra_env: dict[str, str], processes: int = 1, workers: int = 1) -> Launcher:
    def launch(stack: Endpoints, inp: str, out: str, group: str, source: Path) -> Launched:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMER_", "OTEL_"))}
        # Bytecode cached as in an installed package or image (this VM sets
        # PYTHONDONTWRITEBYTECODE: every start would compile all modules), outside the tree.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(BENCH.parent / "build" / "pycache")
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
                "STREAMER_MODELS_DIR": str(source / "models"),
                "PYTHONPATH": str(source),
                **extra_env,
                **OVERRIDES,
            }
        )
        if workers > 1:
            env["STREAMER_WORKERS"] = str(workers)
        first = free_ports(processes * workers)
        ports = [first + i for i in range(processes * workers)]
        # Processes started by hand on one host need their own static member ids, as pods
        # have (the default is the host name: the second would fence the first).
        procs = [
            subprocess.Popen(
                _pinned([sys.executable, "-m", "streamer", "run"]),
                env={
                    **env,
                    "STREAMER_METRICS_PORT": str(first + i * workers),
                    "STREAMER_GROUP_INSTANCE_ID": f"bench-{group}-{i}",
                },
                cwd=source,  # ``-m`` puts the cwd first on sys.path, before PYTHONPATH
            )
            for i in range(processes)
        ]
        return Launched(procs, ports)

    return launch


def _script(name: str, *extra: str) -> Launcher:
    def launch(stack: Endpoints, inp: str, out: str, group: str, source: Path) -> Launched:
        args = ["--bootstrap", stack.kafka_bootstrap, "--input", inp, "--output", out]
        args += ["--group", group]
        if name == "naive.py":
            args += ["--redis-url", stack.redis_url]
        proc = subprocess.Popen(
            _pinned([sys.executable, str(BENCH / name), *args, *extra]),
            env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
        )
        return Launched([proc])

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


@dataclass(frozen=True)
class Contender:
    """How to start it; the share of inputs whose traceparent says sampled; whether it
    also runs at half the maximum rate (the naive scorer cannot)."""

    make: Callable[[], Launcher]
    sampled: float = 1.0
    half_rate: bool = True


CONTENDERS: dict[str, Contender] = {
    "streamer": Contender(lambda: _streamer({})),
    "streamer, velocity state off": Contender(
        lambda: _streamer({"STREAMER_VELOCITY_STATE": "false"})
    ),
    "streamer, reasons off": Contender(lambda: _streamer({"STREAMER_REASONS": "off"})),
    "streamer, reasons on every event": Contender(
        lambda: _streamer({"STREAMER_REASONS": "all"}), half_rate=False
    ),
    "streamer, 10 ms fill wait": Contender(lambda: _streamer({"STREAMER_MAX_WAIT_MS": "10"})),
    "streamer, latency target 25 ms": Contender(
        lambda: _streamer({"STREAMER_LATENCY_TARGET_MS": "25"})
    ),
    "streamer, shadow model": Contender(
        lambda: _streamer({"STREAMER_SHADOW_MODEL": "fraud-gbt@1"}), half_rate=False
    ),
    "streamer, tracing on, 10% sampled upstream": Contender(_traced, 0.1, half_rate=False),
    "streamer, tracing on, all sampled": Contender(_traced, 1.0, half_rate=False),
    "streamer, 2 processes": Contender(lambda: _streamer({}, processes=2)),
    "streamer, STREAMER_WORKERS=2": Contender(lambda: _streamer({}, workers=2)),
    "streamer, exactly-once": Contender(
        lambda: _streamer({"STREAMER_PROCESSING_GUARANTEE": "exactly-once"}), half_rate=False
    ),
    "streamer, exactly-once, a transaction per batch": Contender(
        lambda: _streamer(
            {
                "STREAMER_PROCESSING_GUARANTEE": "exactly-once",
                "STREAMER_TRANSACTION_MAX_BATCHES": "1",
            }
        ),
        half_rate=False,
    ),
    "passthrough (ceiling)": Contender(lambda: _script("passthrough.py")),
    "naive per-event": Contender(lambda: _script("naive.py"), half_rate=False),
}
