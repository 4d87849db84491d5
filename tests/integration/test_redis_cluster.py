"""The feature cache and the velocity state beyond one Redis: a real 3-primary/3-replica
Redis Cluster and a Sentinel group of ``redis-server`` processes on loopback.

``streamer features load`` spreads the keys over every primary; ``streamer run`` scores a
steady stream on them with its velocity state, every input exactly once and COMPLETE; a
primary killed with -9 mid-stream (on the cluster and under Sentinel) loses nothing: the
batches caught by the failover are scored DEGRADED (as for a one-node outage), and
COMPLETE batches come back once the replica has taken over. The monitor's join state costs
one round trip per primary a step, and joins on the primary Sentinel promoted.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamer.dev.devstack.redis_cluster import SENTINEL_SERVICE, RedisClusterGroup, SentinelGroup
from streamer.features.breaker import CircuitBreaker
from streamer.features.cache import FeatureCache
from streamer.features.layout import CARD_DEFAULTS, MERCHANT_DEFAULTS
from streamer.features.redis_client import make_redis_client, parse_sentinels
from streamer.model.registry import load_model
from streamer.scoring.kernel import ScoringKernel
from streamer.testing import sample_event
from tests.integration.backfill_files import write_avro
from tests.integration.cluster_helpers import count_keys, primaries
from tests.integration.mlflow_helpers import MODELS, cli
from tests.integration.steady_run import exactly_once, log_append_topics, stream_with
from tests.integration.streamer_proc import committed_total, streamer_env
from tests.integration.swap_helpers import CARDS, MERCHANTS, Output, now_ms

FAILOVER_MS = 15_000  # node timeout 1 s + election; Sentinel: down-after 1 s + failover


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path / "sentinel")
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.fixture
def topics(
    admin: AdminClient, make_topic: Callable[..., str], unique: str
) -> Iterator[dict[str, str]]:
    """The scored topic stamps LogAppendTime: recovery is timed by the broker."""
    yield from log_append_topics(admin, make_topic, unique)


def _cluster_settings(cluster: RedisClusterGroup) -> dict[str, str]:
    return {"redis_url": cluster.url, "redis_mode": "cluster"}


def _sentinel_settings(group: SentinelGroup) -> dict[str, str]:
    return {
        "redis_url": "redis://sentinel/0",
        "redis_mode": "sentinel",
        "redis_sentinels": group.addresses,
        "redis_sentinel_service": SENTINEL_SERVICE,
    }


def _load(settings: dict[str, str], prefix: str) -> None:
    """``streamer features load --synthetic`` through the settings (the one factory)."""
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "features", "load", "--synthetic", "--prefix",
         prefix, "--cards", str(CARDS), "--merchants", str(MERCHANTS)],
        env=streamer_env(**settings), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_features_load_spreads_over_every_primary_and_reads_back(
    cluster: RedisClusterGroup, redis_prefix: str
) -> None:
    _load(_cluster_settings(cluster), redis_prefix)
    per_primary = [count_keys(n, f"{redis_prefix}feat:v1:*") for n in primaries(cluster)]
    print(f"features load: keys per primary {per_primary}")
    assert len(per_primary) == 3, per_primary
    assert sum(per_primary) == CARDS + MERCHANTS, per_primary
    assert min(per_primary) > (CARDS + MERCHANTS) / 4, f"uneven spread: {per_primary}"
    client = make_redis_client(cluster.url, password=None, timeout_ms=500, mode="cluster")
    cache = FeatureCache(
        client,
        prefix=redis_prefix,
        card_defaults=CARD_DEFAULTS,
        merchant_defaults=MERCHANT_DEFAULTS,
        breaker=CircuitBreaker(3, 1.0),
    )
    cards = [f"card-{i:06d}" for i in range(500)] + ["card-unknown"]
    merchants = [f"merchant-{i % MERCHANTS:05d}" for i in range(501)]
    features = cache.fetch(cards, merchants)
    assert not features.degraded
    assert features.card_found[:500].all()
    assert not features.card_found[500]
    assert features.merchant_found.all()
    client.close()


def test_features_load_history_seeds_velocity_state_over_the_cluster(
    cluster: RedisClusterGroup, redis_prefix: str, tmp_path: Path
) -> None:
    start = 1_764_000_000_000
    cards = [f"card-h{i}" for i in range(40)]  # 40 cards: 40 slots on every primary
    events = [
        sample_event(transaction_id=f"{c}-t{i}", card_id=c, merchant_id=f"m-{i}",
                     amount_minor=150, event_time=start + 4_000 * i)
        for c in cards for i in range(5)
    ]  # fmt: skip
    history = write_avro(tmp_path / "history.avro", events)
    settings = {**_cluster_settings(cluster), "redis_key_prefix": redis_prefix}
    done = cli("features", "load", "--history", str(history), env=streamer_env(**settings))
    assert done.returncode == 0, done.stderr
    assert "seeded velocity state of 40 cards from 200 events" in done.stderr
    model = load_model("fraud-gbt@2", MODELS)
    client = make_redis_client(cluster.url, password=None, timeout_ms=2000, mode="cluster")
    cache = FeatureCache(
        client,
        prefix=redis_prefix,
        card_defaults=model.card_defaults,
        merchant_defaults=model.merchant_defaults,
        breaker=CircuitBreaker(3, 1.0),
        velocity="read-write",
    )
    kernel = ScoringKernel(model, cache, feature_logging=True)
    live = [
        sample_event(transaction_id=f"{c}-live", card_id=c, event_time=start + 60_000)
        for c in cards
    ]
    scored = kernel.score(live, [(0, i) for i in range(len(live))]).columns["features"]
    assert {f["txn_count_1h"] for f in scored} == {5.0}  # each card's history counts
    assert cache.stats.velocity["write", "written"] == len(cards)
    client.close()


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(host, port) of every packed write to a Redis socket from now on: one per node
    per round trip."""
    from redis.connection import AbstractConnection

    sent: list[tuple[str, int]] = []
    original = AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append((self.host, self.port))
        original(self, command, check_health)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent


def test_a_batch_costs_one_round_trip_per_primary_to_read_and_one_to_write(
    cluster: RedisClusterGroup, redis_prefix: str, sends: list[tuple[str, int]]
) -> None:
    from streamer.features.velocity_state import CardState, pack
    from streamer.features.velocity_store import write_states

    client = make_redis_client(cluster.url, password=None, timeout_ms=2000, mode="cluster")
    cache = FeatureCache(
        client, prefix=redis_prefix, card_defaults=CARD_DEFAULTS,
        merchant_defaults=MERCHANT_DEFAULTS, breaker=CircuitBreaker(3, 1.0), velocity="read",
    )  # fmt: skip
    cards = [f"card-{i:06d}" for i in range(500)]
    cache.fetch(cards, cards)  # connects to every primary, learns the slot map
    updates = {c: pack(CardState(high=10)) for c in cards}
    write_states(client, redis_prefix, updates, dict.fromkeys(cards, 9))  # caches the script
    nodes = {("127.0.0.1", n.port) for n in primaries(cluster)}
    sends.clear()
    features = cache.fetch(cards, [f"merchant-{i % 300:05d}" for i in range(500)])
    reads, sends[:] = list(sends), []
    updates = {c: pack(CardState(high=11)) for c in cards}
    done = write_states(client, redis_prefix, updates, dict.fromkeys(cards, 10))
    assert not features.degraded
    assert done.written == 500
    assert sorted(reads) == sorted(nodes)  # one packed write to each primary
    assert sorted(sends) == sorted(nodes)
    client.close()


def _monitor_batch(version: int, start_ms: int) -> tuple[list[Any], list[Any]]:
    """1,000 scored events over 7 days from ``start_ms`` and a label for each."""
    from streamer.monitor.records import ScoredRow, pack_label, pack_scored
    from streamer.monitor.state import LabelWrite, ScoredWrite

    ids = [str(uuid.uuid4()) for _ in range(1000)]
    rows = [ScoredRow(t, start_ms + i * 600_000, 100, "EUR", 0.5, "APPROVE", version)
            for i, t in enumerate(ids)]  # fmt: skip
    scored = [ScoredWrite(r.transaction_id, pack_scored(r), r.hour, version) for r in rows]
    return scored, [LabelWrite(t, pack_label(start_ms, 1, 1)) for t in ids]


def test_a_monitor_batch_costs_one_round_trip_per_primary_a_step(
    cluster: RedisClusterGroup, redis_prefix: str, sends: list[tuple[str, int]]
) -> None:
    from streamer.monitor.state import JoinState

    client = make_redis_client(cluster.url, password=None, timeout_ms=2000, mode="cluster")
    state = JoinState(client, redis_prefix, 120 * 86_400_000)
    version = state.interner.id("version", "fraud-gbt@2")
    start = (now_ms() // 3_600_000 - 24 * 7) * 3_600_000
    scored, labels = _monitor_batch(version, start)
    state.add_scored(scored)  # connects to every primary, caches the scripts
    state.add_labels(labels)
    scored, labels = _monitor_batch(version, start)
    nodes = sorted(("127.0.0.1", n.port) for n in primaries(cluster))
    sends.clear()
    assert state.add_scored(scored).new == 1000
    assert sorted(sends) == nodes  # one script call per shard, one packed write per primary
    sends.clear()
    assert state.add_labels(labels).joined == 1000
    assert sorted(sends) == sorted(nodes * 2)  # the label scripts, then the joins
    sends.clear()
    hours = range(start // 3_600_000, start // 3_600_000 + 24 * 7)
    assert len(dict(state.joined(hours))) == 2000
    assert sorted(sends) == sorted(nodes * 7)  # a day of hashes a round trip
    client.close()


@dataclass(frozen=True)
class Recovery:
    """What a kill -9 of the primary did to the stream, timed by the broker."""

    degraded: int
    first_complete_ms: int | None  # after the kill and after the last DEGRADED output


def _recovery(outputs: list[Output], killed_ms: int) -> Recovery:
    statuses = [(o.appended_ms, o.record["feature_status"]) for o in outputs]
    degraded = [t for t, s in statuses if s == "DEGRADED"]
    after = max([killed_ms, *degraded])
    complete = [t for t, s in statuses if s == "COMPLETE" and t >= after]
    return Recovery(len(degraded), min(complete) - killed_ms if complete else None)


def _velocity_keys(client: Any, prefix: str, cards: set[str]) -> int:
    """How many of ``cards`` have a velocity state (read through the cluster client)."""
    from streamer.features.velocity_store import RedisVelocityStore

    states = RedisVelocityStore(client, prefix).read(sorted(cards))
    return sum(1 for s in states if s is not None)


def _coordinator_ready(bootstrap: str, group: str, topic: str) -> None:
    """Until the broker answers committed offsets for ``group``: a fresh broker's offsets
    topic answers NOT_COORDINATOR for a while, which ``stream_with``'s wait does not
    retry."""
    deadline = time.monotonic() + 60
    while True:
        try:
            committed_total(bootstrap, group, topic)
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _run(
    bed_settings: dict[str, str],
    kill: Callable[[], None] | None,
    kafka_bootstrap: str,
    topics: dict[str, str],
    group_id: str,
    run_settings: dict[str, str],
    tmp_path: Path,
) -> tuple[list[Output], int]:
    settings = {**run_settings, **bed_settings}
    _load(settings, run_settings["redis_key_prefix"])
    killed: list[int] = []

    def act(_: subprocess.Popen[bytes]) -> None:
        if kill is not None:
            killed.append(now_ms())
            kill()

    _coordinator_ready(kafka_bootstrap, group_id, topics["input_topic"])
    log = tmp_path / "streamer.log"
    run = stream_with(kafka_bootstrap, topics, group_id, settings, log, act)
    return exactly_once(kafka_bootstrap, topics, run.sent), (killed or [0])[0]


def test_the_stream_scores_on_the_cluster_with_its_velocity_state(
    cluster: RedisClusterGroup,
    kafka_bootstrap: str,
    topics: dict[str, str],
    group_id: str,
    run_settings: dict[str, str],
    tmp_path: Path,
) -> None:
    outputs, _ = _run(
        _cluster_settings(cluster), None, kafka_bootstrap, topics, group_id, run_settings,
        tmp_path,
    )  # fmt: skip
    statuses = Counter(o.record["feature_status"] for o in outputs)
    assert set(statuses) == {"COMPLETE"}, statuses
    cards = {o.record["card_id"] for o in outputs}
    client = make_redis_client(cluster.url, password=None, timeout_ms=2000, mode="cluster")
    assert _velocity_keys(client, run_settings["redis_key_prefix"], cards) == len(cards)
    client.close()


def test_slots_migrated_mid_stream_are_followed_without_loss(
    cluster: RedisClusterGroup,
    kafka_bootstrap: str,
    topics: dict[str, str],
    group_id: str,
    run_settings: dict[str, str],
    tmp_path: Path,
) -> None:
    source, target = primaries(cluster)[:2]
    moved: list[int] = []

    def reshard() -> None:
        before = count_keys(source, f"{run_settings['redis_key_prefix']}*")
        cluster.reshard(source, target, 1000)
        moved.append(before - count_keys(source, f"{run_settings['redis_key_prefix']}*"))

    outputs, _ = _run(
        _cluster_settings(cluster), reshard, kafka_bootstrap, topics, group_id, run_settings,
        tmp_path,
    )  # fmt: skip
    statuses = Counter(o.record["feature_status"] for o in outputs)
    print(f"1,000 slots ({moved[0]} of this test's keys) migrated mid-stream: {statuses}")
    assert moved[0] > 0
    assert statuses["COMPLETE"] >= 0.99 * len(outputs), statuses
    cards = {o.record["card_id"] for o in outputs}
    client = make_redis_client(cluster.url, password=None, timeout_ms=2000, mode="cluster")
    assert _velocity_keys(client, run_settings["redis_key_prefix"], cards) == len(cards)
    client.close()


def test_kill_9_of_a_cluster_primary_mid_stream_loses_nothing_and_recovers(
    cluster: RedisClusterGroup,
    kafka_bootstrap: str,
    topics: dict[str, str],
    group_id: str,
    run_settings: dict[str, str],
    tmp_path: Path,
) -> None:
    victim = cluster.primary_of(f"{run_settings['redis_key_prefix']}feat:v1:card:card-000001")
    try:
        outputs, killed_ms = _run(
            _cluster_settings(cluster), victim.kill, kafka_bootstrap, topics, group_id,
            run_settings, tmp_path,
        )  # fmt: skip
        done = _recovery(outputs, killed_ms)
        print(f"cluster primary kill -9: {done.degraded} DEGRADED outputs, first COMPLETE "
              f"{done.first_complete_ms} ms after the kill")  # fmt: skip
        assert done.first_complete_ms is not None
        assert done.first_complete_ms < FAILOVER_MS
        assert outputs[-1].record["feature_status"] == "COMPLETE"
    finally:
        victim.start()  # back as a replica of its successor (its nodes.conf says so)
        cluster.wait_ok()


def test_kill_9_of_the_sentinel_primary_mid_stream_is_followed(
    sentinels: SentinelGroup,
    kafka_bootstrap: str,
    topics: dict[str, str],
    group_id: str,
    run_settings: dict[str, str],
    tmp_path: Path,
) -> None:
    assert sentinels.primary is not None
    assert sentinels.replica is not None
    outputs, killed_ms = _run(
        _sentinel_settings(sentinels), sentinels.primary.kill, kafka_bootstrap, topics,
        group_id, run_settings, tmp_path,
    )  # fmt: skip
    done = _recovery(outputs, killed_ms)
    print(f"sentinel primary kill -9: {done.degraded} DEGRADED outputs, first COMPLETE "
          f"{done.first_complete_ms} ms after the kill")  # fmt: skip
    assert done.first_complete_ms is not None
    assert done.first_complete_ms < FAILOVER_MS
    sentinels.wait_primary(sentinels.replica.port)
    client = make_redis_client(
        "redis://sentinel/0", password=None, timeout_ms=2000, mode="sentinel",
        sentinels=parse_sentinels(sentinels.addresses), service=SENTINEL_SERVICE,
    )  # fmt: skip
    cards = {o.record["card_id"] for o in outputs[-200:]}
    assert _velocity_keys(client, run_settings["redis_key_prefix"], cards) == len(cards)
    from streamer.monitor.state import JoinState  # the monitor, on the promoted primary

    state = JoinState(client, run_settings["redis_key_prefix"], 120 * 86_400_000)
    start = (now_ms() // 3_600_000 - 24 * 7) * 3_600_000
    scored, labels = _monitor_batch(state.interner.id("version", "fraud-gbt@2"), start)
    assert state.add_labels(labels[::2]).pending == 500  # labels before their scores
    assert state.add_scored(scored).joined == 500
    assert state.add_labels(labels).joined == 500
    hours = range(start // 3_600_000, start // 3_600_000 + 24 * 7)
    assert len(dict(state.joined(hours))) == 1000
    client.close()
