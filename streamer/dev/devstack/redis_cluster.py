"""A Redis Cluster and a Sentinel group of Debian's ``redis-server`` processes on loopback.

``RedisClusterGroup``: 3 primaries with a replica each, made into one cluster by
``redis-cli --cluster create`` (slots split evenly, replicas placed by redis-cli), with a
1 s node timeout so a killed primary's replica takes over within about 2 s: the failover
tests wait seconds, not the 15 s default. ``SentinelGroup``: a primary, a replica and three
Sentinels watching them (quorum 2), failover after 1 s down. Both for tests and
``make dev-up ARGS=--redis-cluster``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from streamer.dev.devstack.processes import ServiceError, free_port
from streamer.dev.devstack.redis import RedisServer

NODE_TIMEOUT_MS = 1000
SENTINEL_SERVICE = "mymaster"


def _redis_cli() -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        raise ServiceError("redis-cli is not installed: apt-get install redis-tools")
    return binary


@dataclass
class RedisClusterGroup:
    """``primaries`` primaries with ``replicas`` replicas each; ``start`` blocks until every
    node reports ``cluster_state:ok`` and agrees on the slot map."""

    workdir: Path
    primaries: int = 3
    replicas: int = 1
    die_with_parent: bool = True
    nodes: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A startup node's URL (the client discovers the rest)."""
        return self.nodes[0].url

    @property
    def log_path(self) -> Path:
        """The first node's log (each node logs under its own folder of ``workdir``)."""
        return self.workdir / "node0" / "redis.log"

    def start(self, timeout: float = 60.0) -> None:
        count = self.primaries * (1 + self.replicas)
        for i in range(count):
            bus = free_port()
            node = RedisServer(
                self.workdir / f"node{i}",
                die_with_parent=self.die_with_parent,
                extra_args=(
                    "--cluster-enabled", "yes", "--cluster-port", str(bus),
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                ),
            )  # fmt: skip
            node.start()
            self.nodes.append(node)
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        cmd = [_redis_cli(), "--cluster", "create", *addresses]
        cmd += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise ServiceError(f"redis-cli --cluster create failed: {done.stdout[-400:]}")
        self.wait_ok(timeout)

    def wait_ok(self, timeout: float = 30.0, *, skip: tuple[RedisServer, ...] = ()) -> None:
        """Until every running node (but ``skip``) says ``cluster_state:ok`` and all of them
        see the same primaries."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                views = [self._view(n) for n in self.nodes if n.pid and n not in skip]
            except redis.RedisError:
                views = []
            if views and all(ok for ok, _ in views) and len({p for _, p in views}) == 1:
                return
            time.sleep(0.1)
        raise ServiceError(f"Redis Cluster not ok after {timeout:.0f}s; see {self.workdir}")

    @staticmethod
    def _view(node: RedisServer) -> tuple[bool, frozenset[str]]:
        client: Any = redis.Redis(**node.client_kwargs())
        try:
            info = client.execute_command("CLUSTER", "INFO").decode()
            nodes = client.execute_command("CLUSTER", "NODES").decode()
        finally:
            client.close()
        primaries = frozenset(
            line.split()[1].split("@")[0]
            for line in nodes.splitlines()
            if "master" in line.split()[2] and "fail" not in line.split()[2]
        )
        return "cluster_state:ok" in info, primaries

    def primary_of(self, key: str) -> RedisServer:
        """The node that serves ``key``'s slot now."""
        client: Any = redis.Redis(**self.nodes[0].client_kwargs())
        try:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        finally:
            client.close()
        for node in self.nodes:
            if not node.pid:
                continue
            c: Any = redis.Redis(**node.client_kwargs())
            try:
                for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
            except redis.RedisError:
                continue
            finally:
                c.close()
        raise ServiceError(f"no node serves the slot of {key!r}")

    def reshard(self, source: RedisServer, target: RedisServer, slots: int) -> None:
        """Move ``slots`` slots, keys and all, from primary ``source`` to ``target``
        (``redis-cli --cluster reshard``: MIGRATE key by key; clients meet ASK meanwhile and
        MOVED after)."""
        ids = {}
        for node in (source, target):
            client: Any = redis.Redis(**node.client_kwargs())
            try:
                ids[node.port] = client.execute_command("CLUSTER", "MYID").decode()
            finally:
                client.close()
        cmd = [
            _redis_cli(), "--cluster", "reshard", f"127.0.0.1:{source.port}",
            "--cluster-from", ids[source.port], "--cluster-to", ids[target.port],
            "--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "10",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise ServiceError(f"redis-cli --cluster reshard failed: {done.stdout[-400:]}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class SentinelGroup:
    """A primary, one replica and three Sentinels (quorum 2) watching ``SENTINEL_SERVICE``."""

    workdir: Path
    die_with_parent: bool = True
    primary: RedisServer | None = None
    replica: RedisServer | None = None
    sentinels: list[RedisServer] = field(default_factory=list)

    @property
    def addresses(self) -> str:
        """``host:port,...`` of the Sentinels (``STREAMER_REDIS_SENTINELS``)."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self, timeout: float = 30.0) -> None:
        self.primary = RedisServer(self.workdir / "primary", die_with_parent=self.die_with_parent)
        self.primary.start()
        self.replica = RedisServer(
            self.workdir / "replica",
            die_with_parent=self.die_with_parent,
            extra_args=("--replicaof", "127.0.0.1", str(self.primary.port)),
        )
        self.replica.start()
        self._wait_synced(timeout)
        for i in range(3):
            conf = self.workdir / f"sentinel{i}" / "sentinel.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(
                f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n"
                f"sentinel failover-timeout {SENTINEL_SERVICE} 5000\n"
            )
            sentinel = RedisServer(
                conf.parent, die_with_parent=self.die_with_parent, config_file=conf
            )
            sentinel.start()
            self.sentinels.append(sentinel)
        self.wait_primary(self.primary.port, timeout)

    def _wait_synced(self, timeout: float) -> None:
        """Until the replica's link to the primary is up (its first full sync done)."""
        assert self.replica is not None
        client: Any = redis.Redis(**self.replica.client_kwargs())
        deadline = time.monotonic() + timeout
        try:
            while client.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise ServiceError(f"replica not in sync after {timeout:.0f}s")
                time.sleep(0.05)
        finally:
            client.close()

    def wait_primary(self, port: int, timeout: float = 30.0) -> None:
        """Until every Sentinel names the primary on ``port`` and sees its replica."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._names(s) == port for s in self.sentinels):
                return
            time.sleep(0.1)
        raise ServiceError(f"Sentinels do not agree on primary :{port} after {timeout:.0f}s")

    @staticmethod
    def _names(sentinel: RedisServer) -> int | None:
        client: Any = redis.Redis(**sentinel.client_kwargs())
        try:
            found = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE)
            replicas = client.execute_command("SENTINEL", "REPLICAS", SENTINEL_SERVICE)
        except redis.RedisError:
            return None
        finally:
            client.close()
        return int(found[1]) if found and replicas else None

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.primary]:
            if server is not None:
                server.stop()
