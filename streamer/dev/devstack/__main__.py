"""``python -m streamer.dev.devstack up|down|status|fetch``: the local stack for people.

``up`` starts a Kafka broker, a redis-server, a schema registry and an MLflow tracking
server (each skippable: ``--no-kafka``, ``--no-redis``, ``--no-schema-registry``,
``--no-mlflow``; ``--redis-cluster``: a 3-primary, 3-replica Redis Cluster instead of one
redis-server, with ``STREAMER_REDIS_MODE=cluster`` in the env file) that outlive the
command, records them in ``.dev/stack.json`` and writes ``.dev/env``, which ``source
.dev/env`` turns into the variables ``streamer run`` and other tools read, with the ``bin``
folder of the environment that ran ``up`` (``make dev-up``: ``.venv/bin``) first on
``PATH``, so ``streamer`` is the command of this checkout. Running
``up`` again while the stack answers starts nothing. ``down`` stops what ``up`` started and
removes its files. ``status`` exits 0 when everything recorded runs, 1 otherwise. ``fetch``
only fills the caches (for CI).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from streamer.dev.devstack.kafka import KafkaBroker, ensure_jars, new_workdir
from streamer.dev.devstack.mlflow import MlflowServer, ensure_server
from streamer.dev.devstack.processes import ServiceError, pid_alive, terminate_pid
from streamer.dev.devstack.redis import RedisServer
from streamer.dev.devstack.redis_cluster import RedisClusterGroup
from streamer.dev.devstack.schema_registry import SchemaRegistry, ensure_app

DEV_DIR = Path(".dev")
STATE = DEV_DIR / "stack.json"
ENV = DEV_DIR / "env"
SERVICES = ("kafka", "redis", "schema-registry", "mlflow")

Service = KafkaBroker | RedisServer | RedisClusterGroup | SchemaRegistry | MlflowServer


def scripts_dir() -> str:
    """The folder of this interpreter's console scripts (``.venv/bin`` under ``make``)."""
    return os.path.dirname(os.path.abspath(sys.executable))


def env_lines(
    addresses: dict[str, str], bin_dir: str | None = None, *, redis_cluster: bool = False
) -> str:
    """``.dev/env``: exported ``STREAMER_*`` names for streamer, plain names for other tools
    (kcat, redis-cli, the test harness, MLflow's own client), and ``bin_dir`` (when given)
    first on ``PATH``."""
    names = {
        "kafka": ("STREAMER_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        "redis": ("STREAMER_REDIS_URL", "REDIS_URL"),
        "schema-registry": ("STREAMER_SCHEMA_REGISTRY_URL", ""),
        "mlflow": ("", "MLFLOW_TRACKING_URI"),
    }
    lines = [
        f"export {names[s][0]}={addresses[s]}" for s in SERVICES if s in addresses and names[s][0]
    ]
    plain = " ".join(
        f"{names[s][1]}={addresses[s]}" for s in SERVICES if s in addresses and names[s][1]
    )
    if plain:
        lines.append(f"export {plain}")
    if redis_cluster and "redis" in addresses:
        lines.append("export STREAMER_REDIS_MODE=cluster")
    if bin_dir:
        lines.append(f'export PATH={shlex.quote(bin_dir)}:"$PATH"')
    return "".join(f"{line}\n" for line in lines)


def make_services(
    workdir: Path, wanted: list[str], *, redis_cluster: bool = False
) -> dict[str, Service]:
    """Launchers for the wanted services; none started yet. Redis first: it is quickest."""

    def redis() -> Service:
        if redis_cluster:
            return RedisClusterGroup(workdir / "redis-cluster", die_with_parent=False)
        return RedisServer(workdir / "redis", die_with_parent=False)

    factories: dict[str, Callable[[], Service]] = {
        "redis": redis,
        "kafka": lambda: KafkaBroker(workdir / "kafka", die_with_parent=False),
        "schema-registry": lambda: SchemaRegistry(workdir / "registry", die_with_parent=False),
        "mlflow": lambda: MlflowServer(workdir / "mlflow", die_with_parent=False),
    }
    order = ("redis", "kafka", "schema-registry", "mlflow")
    return {name: factories[name]() for name in order if name in wanted}


def address(service: Service) -> str:
    if isinstance(service, KafkaBroker):
        return service.bootstrap
    if isinstance(service, RedisServer | RedisClusterGroup | SchemaRegistry):
        return service.url
    return service.tracking_uri


def start_all(services: list[Service]) -> None:
    """Start the services side by side (each mostly waits for a JVM or an interpreter to
    warm up) and raise the first failure once every start has ended."""
    with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
        futures = [pool.submit(service.start) for service in services]
    for future in futures:
        future.result()


def _read_state() -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads(STATE.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def _running(state: dict[str, object]) -> bool:
    pids = state.get("pids", [])
    return isinstance(pids, list) and bool(pids) and all(pid_alive(int(p)) for p in pids)


def up(wanted: list[str], *, redis_cluster: bool = False) -> int:
    state = _read_state()
    if state is not None and _running(state):
        print(f"local stack already running; addresses in {ENV}")
        print(ENV.read_text(), end="")
        return 0
    if state is not None:
        down(quiet=True)
    if not wanted:
        print("dev-up: every service was skipped; nothing to start", file=sys.stderr)
        return 2
    DEV_DIR.mkdir(exist_ok=True)
    workdir = new_workdir("streamer-dev-")
    started = time.monotonic()
    services = make_services(workdir, wanted, redis_cluster=redis_cluster)
    try:
        start_all(list(services.values()))
    except BaseException as exc:  # Ctrl-C too: nothing started may outlive a failed up
        for service in services.values():
            service.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if not isinstance(exc, ServiceError):
            raise
        print(f"dev-up failed: {exc}", file=sys.stderr)
        return 1
    addresses = {name: address(service) for name, service in services.items()}
    state_doc = {
        "pids": [pid for service in services.values() for pid in _pids(service)],
        "workdir": str(workdir),
        "addresses": addresses,
        "logs": {name: str(service.log_path) for name, service in services.items()},
    }
    STATE.write_text(json.dumps(state_doc, indent=2))
    ENV.write_text(env_lines(addresses, scripts_dir(), redis_cluster=redis_cluster))
    print(f"local stack up in {time.monotonic() - started:.1f}s (logs under {workdir})")
    print(ENV.read_text(), end="")
    return 0


def _pids(service: Service) -> list[int]:
    if isinstance(service, RedisClusterGroup):
        return [node.pid for node in service.nodes]
    return [service.pid]


def down(*, quiet: bool = False) -> int:
    state = _read_state()
    if state is None:
        if not quiet:
            print("no local stack recorded in .dev/stack.json")
        return 0
    pids = state.get("pids", [])
    for pid in pids if isinstance(pids, list) else []:
        terminate_pid(int(pid), grace=15.0)
    workdir = state.get("workdir")
    if isinstance(workdir, str):
        shutil.rmtree(workdir, ignore_errors=True)
    STATE.unlink(missing_ok=True)
    ENV.unlink(missing_ok=True)
    if not quiet:
        print("local stack stopped")
    return 0


def status() -> int:
    """0 when every recorded service runs, 1 otherwise (for scripts; ``make`` ignores it)."""
    state = _read_state()
    if state is None or not _running(state):
        print("local stack: not running")
        return 1
    print(f"local stack: running\n{ENV.read_text()}", end="")
    return 0


def fetch(wanted: list[str]) -> int:
    """Fill the caches (Kafka jars, Apicurio, the MLflow venv) without starting anything."""
    steps = {"kafka": ensure_jars, "schema-registry": ensure_app, "mlflow": ensure_server}
    try:
        for name, step in steps.items():
            if name in wanted:
                print(f"{name}: {step()}")
    except ServiceError as exc:
        print(f"dev fetch failed: {exc}", file=sys.stderr)
        return 1
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m streamer.dev.devstack")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "fetch"):
        sub = commands.add_parser(name)
        for service in SERVICES:
            sub.add_argument(f"--no-{service}", action="store_true", help=f"skip {service}")
        if name == "up":
            sub.add_argument("--redis-cluster", action="store_true", help="a 6-node Redis Cluster")
    commands.add_parser("down")
    commands.add_parser("status")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.command in ("up", "fetch"):
        flags = vars(args)
        wanted = [s for s in SERVICES if not flags[f"no_{s.replace('-', '_')}"]]
        if args.command == "up":
            return up(wanted, redis_cluster=args.redis_cluster)
        return fetch(wanted)
    return down() if args.command == "down" else status()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
