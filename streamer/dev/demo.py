"""``make demo``: the whole job on a laptop, with live progress, then a summary.

Starts Kafka and Redis, creates the topics, seeds the synthetic feature set, produces
synthetic card payments at a steady rate, runs ``streamer run`` as a real process, and
shows events/s, end-to-end latency and the share of review/decline decisions while it
scores. Then it stops everything and prints a few scored events.

A newcomer's shell is not a clean room, so the demo isolates itself: it starts its own
stack and gives the streamer a clean environment (the user's ``STREAMER_*``,
``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` are ignored unless ``DEMO_USE_ENV=1``), takes a
free port for the streamer's metrics, sends librdkafka's own stderr lines to a log file
instead of the live view, and ends any failure with one line naming the problem (and the
log to read) and exit code 1. ``DEMO_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import redis
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from rich.console import Console
from rich.live import Live
from rich.table import Table

from streamer.codec.schemas import scored_schema
from streamer.codec.wire import make_decoder
from streamer.dev.demo_burst import BURST, burst_table, send_burst
from streamer.dev.devstack.processes import free_port
from streamer.dev.devstack.stack import (
    Endpoints,
    acquire,
    docker_available,
    docker_stack,
    local_stack,
)
from streamer.dev.generator import send_synthetic
from streamer.errors import Rejection
from streamer.features.loader import load_command
from streamer.features.reference import currency_exponent

LOG_DIR = Path(".dev")
STREAMER_LOG = LOG_DIR / "demo-streamer.log"
CLIENT_LOG = LOG_DIR / "demo-clients.log"
# Variables of the user's shell that would change what the demo's streamer does.
_FOREIGN = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")


class DemoError(Exception):
    """A failure the demo reports as one line."""


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise DemoError(
            f"{name}={raw!r} is not a whole number; unset it or set e.g. {default}"
        ) from None
    if value <= 0:
        raise DemoError(f"{name} must be positive (got {value})")
    return value


EVENTS = 30_000
RATE = 2_000.0
CARDS = 200_000
"""The demo squeezes a day's traffic into seconds of event time: spread over many cards so
that ordinary cards transact a few times at most, as in a real quarter of a minute, and
the velocity state sees bursts only where there are bursts."""
console = Console(stderr=True)


def _use_env() -> bool:
    return os.environ.get("DEMO_USE_ENV", "") not in ("", "0", "false", "no")


@contextmanager
def _stack() -> Iterator[Endpoints]:
    """The user's Kafka and Redis with DEMO_USE_ENV=1; otherwise a stack of the demo's own."""
    if _use_env():
        with acquire() as endpoints:
            yield endpoints
    elif os.environ.get("STREAMER_DEV_NO_DOCKER") != "1" and docker_available():
        with docker_stack() as endpoints:
            yield endpoints
    else:
        with local_stack() as endpoints:
            yield endpoints


def child_environment(
    base: dict[str, str], settings: dict[str, str], *, use_env: bool
) -> dict[str, str]:
    """The streamer's environment: the user's minus anything that configures streamer or
    points at another cluster (unless ``use_env``), plus the demo's settings."""
    env = {
        k: v for k, v in base.items() if use_env or not (k.startswith("STREAMER_") or k in _FOREIGN)
    }
    return {**env, **settings}


def _native_stderr_to(path: Path) -> TextIO:
    """Point file descriptor 2 at ``path`` for the rest of the process (librdkafka writes its
    ``%3|…|FAIL|`` lines there, below Python, until its clients are destroyed, possibly
    at exit) and return a stream on the real terminal for the live view."""
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    return terminal


def _create_topics(bootstrap: str, names: dict[str, int], scored: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10_000})
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
    for name, future in futures.items():
        try:
            future.result(timeout=30)
        except Exception as exc:
            raise DemoError(f"could not create topic {name} on {bootstrap}: {exc}") from exc


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


def _settings(stack: Endpoints, topics: list[str], run_id: str, port: int) -> dict[str, str]:
    inp, out, dlq = topics
    return {
        "STREAMER_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        "STREAMER_REDIS_URL": stack.redis_url,
        "STREAMER_INPUT_TOPIC": inp,
        "STREAMER_OUTPUT_TOPIC": out,
        "STREAMER_DLQ_TOPIC": dlq,
        "STREAMER_GROUP_ID": f"demo-{run_id}",
        "STREAMER_INPUT_FORMAT": "single-object",
        "STREAMER_OUTPUT_FORMAT": "single-object",
        "STREAMER_LOG_LEVEL": "WARNING",
        "STREAMER_FEATURE_LOGGING": "true",  # the burst table shows the velocity inputs
        # A free port: 9464 (the default) may be another streamer's or an OTel exporter's.
        "STREAMER_METRICS_PORT": str(port),
    }


def _producer(topic: str, bootstrap: str, errors: list[BaseException]) -> threading.Thread:
    def burst() -> None:
        try:
            send_burst(bootstrap, topic, after_s=EVENTS / RATE / 2)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread as one line
            errors.append(exc)

    def run() -> None:
        try:
            burst_thread = threading.Thread(target=burst, daemon=True, name="demo-burst")
            burst_thread.start()
            send_synthetic(
                topic=topic, bootstrap_servers=bootstrap, count=EVENTS, rate=RATE, n_cards=CARDS
            )
            burst_thread.join()
        except Exception as exc:  # noqa: BLE001 - reported by the main thread as one line
            errors.append(exc)

    return threading.Thread(target=run, daemon=True, name="demo-producer")


def _run(terminal: TextIO) -> int:
    global console  # noqa: PLW0603 - the live view writes to the real terminal
    console = Console(file=terminal)
    run_id = uuid.uuid4().hex[:6]
    topics = {
        f"demo-{run_id}.transactions": 3,
        f"demo-{run_id}.scored": 3,
        f"demo-{run_id}.transactions.dlq": 1,
    }
    inp, out, _ = topics
    console.print(
        "[bold]starting Kafka and Redis[/] (first run fetches the Kafka jars with Maven)…"
    )
    with _stack() as stack:
        console.print(f"Kafka {stack.kafka_bootstrap} ({stack.source}), Redis {stack.redis_url}")
        _create_topics(stack.kafka_bootstrap, topics, out)
        seeded = load_command(
            redis.Redis.from_url(stack.redis_url), prefix="", file=None, n_cards=CARDS
        )
        console.print(f"seeding features: {seeded}")
        port = free_port()
        env = child_environment(
            dict(os.environ), _settings(stack, list(topics), run_id, port), use_env=_use_env()
        )
        with STREAMER_LOG.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamer", "run"], env=env, stdout=log, stderr=log
            )
        errors: list[BaseException] = []
        _producer(inp, stack.kafka_bootstrap, errors).start()
        try:
            samples = _watch(stack.kafka_bootstrap, out, proc, errors)
        finally:
            proc.terminate()
            code = proc.wait(60)
    return _report(samples, code, errors, port)


def _report(
    samples: list[dict[str, Any]], code: int, errors: list[BaseException], port: int
) -> int:
    if samples:
        console.print(_summary(samples))
        burst = burst_table(samples)
        if burst is not None:
            console.print(burst)
    if errors:
        raise DemoError(f"producing the synthetic events failed: {errors[0]}")
    if code not in (0, -15):
        raise DemoError(f"the streamer exited with {code}; its log: {STREAMER_LOG}")
    if len(samples) < EVENTS + BURST:
        raise DemoError(
            f"only {len(samples):,} of {EVENTS + BURST:,} events were scored in time; "
            f"logs: {STREAMER_LOG}, {CLIENT_LOG}"
        )
    console.print(
        f"scored {len(samples):,} events (streamer metrics were on port {port}); its log is in "
        f"{STREAMER_LOG}. Everything the demo started is stopped."
    )
    return 0


def main() -> int:
    """Run the demo; one line and exit code 1 on any failure (DEMO_DEBUG=1: traceback)."""
    global EVENTS, RATE  # noqa: PLW0603 - read once from the environment
    try:
        EVENTS = _int_env("DEMO_EVENTS", EVENTS)
        RATE = float(_int_env("DEMO_RATE", int(RATE)))
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    LOG_DIR.mkdir(exist_ok=True)
    terminal = sys.stderr if os.environ.get("DEMO_DEBUG") else _native_stderr_to(CLIENT_LOG)
    try:
        return _run(terminal)
    except KeyboardInterrupt:
        print("demo: interrupted; everything it started is stopped", file=terminal)
        return 130
    except Exception as exc:
        if os.environ.get("DEMO_DEBUG"):
            raise
        print(f"demo: {_one_line(exc)}", file=terminal)
        return 1


def _one_line(exc: BaseException) -> str:
    """The error on one line; the client log named when librdkafka may have said more."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, DemoError | RuntimeError):
        text = f"{text} ({type(exc).__name__}; client log: {CLIENT_LOG})"
    return text[:500]


def _watch(
    bootstrap: str, topic: str, proc: subprocess.Popen[bytes], errors: list[BaseException]
) -> list[dict[str, Any]]:
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
        while (
            count < EVENTS + BURST
            and time.monotonic() < deadline
            and proc.poll() is None
            and not errors
        ):
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
