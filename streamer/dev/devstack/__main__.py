"""``python -m streamer.dev.devstack up|down|status|fetch``: the local stack for people.

``up`` starts a broker and a redis-server that outlive the command, records them in
``.dev/stack.json`` and writes ``.dev/env`` (shell-sourceable). Running ``up`` again while
the stack answers starts nothing. ``down`` stops what ``up`` started and removes its files.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from streamer.dev.devstack.kafka import KafkaBroker, ensure_jars, new_workdir
from streamer.dev.devstack.processes import ServiceError, pid_alive, terminate_pid
from streamer.dev.devstack.redis import RedisServer

DEV_DIR = Path(".dev")
STATE = DEV_DIR / "stack.json"
ENV = DEV_DIR / "env"


def _read_state() -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads(STATE.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def _running(state: dict[str, object]) -> bool:
    pids = state.get("pids", [])
    return isinstance(pids, list) and bool(pids) and all(pid_alive(int(p)) for p in pids)


def up() -> int:
    state = _read_state()
    if state is not None and _running(state):
        print(f"local stack already running; addresses in {ENV}")
        print(ENV.read_text(), end="")
        return 0
    if state is not None:
        down(quiet=True)
    DEV_DIR.mkdir(exist_ok=True)
    workdir = new_workdir("streamer-dev-")
    started = time.monotonic()
    redis = RedisServer(workdir / "redis", die_with_parent=False)
    broker = KafkaBroker(workdir / "kafka", die_with_parent=False)
    try:
        redis.start()
        broker.start()
    except ServiceError as exc:
        broker.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"dev-up failed: {exc}", file=sys.stderr)
        return 1
    STATE.write_text(
        json.dumps(
            {
                "pids": [broker.pid, redis.pid],
                "workdir": str(workdir),
                "kafka": broker.bootstrap,
                "redis": redis.url,
                "kafka_log": str(broker.log_path),
            },
            indent=2,
        )
    )
    ENV.write_text(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}\nREDIS_URL={redis.url}\n")
    print(f"local stack up in {time.monotonic() - started:.1f}s (broker log: {broker.log_path})")
    print(ENV.read_text(), end="")
    return 0


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
    state = _read_state()
    if state is None or not _running(state):
        print("local stack: not running")
        return 1
    print(f"local stack: running\n{ENV.read_text()}", end="")
    return 0


def main(argv: list[str]) -> int:
    commands = {"up": up, "down": down, "status": status}
    if argv[:1] == ["fetch"]:
        print(ensure_jars())
        return 0
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: python -m streamer.dev.devstack up|down|status|fetch", file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
