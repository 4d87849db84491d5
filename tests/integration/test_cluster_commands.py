"""``serve``, ``score-file`` and the promotion gate on a real Redis Cluster answer what they
answer on one Redis node: the same snapshot features (``features load --synthetic``) and,
for ``serve``, the same velocity state (``features load --history``), read across the
cluster's primaries. Each command runs as a process, on the cluster and on the run's one
node side by side, with the same data under the same prefix.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import redis

from streamer.dev.devstack.redis_cluster import RedisClusterGroup
from tests.integration.backfill_files import REPO, synthetic_events, write_avro
from tests.integration.cluster_helpers import count_keys, primaries
from tests.integration.serve_proc import serving
from tests.integration.streamer_proc import streamer_env

Bed = dict[str, str]
HISTORY_CARDS = 40
STAMPS = ("request_id", "received_time", "scored_time", "publish_time", "processing_latency_ms")
"""What a server or a run stamps on its own (ids, its clock): left out of comparisons."""


def _both(args: list[str], beds: dict[str, Bed], timeout: float = 180) -> dict[str, str]:
    """``streamer ARGS`` on every bed at once (``{bed}`` in an argument: the bed's name);
    each one's stderr. Exit 0 or 1 (a gate that fails) only."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "streamer", *(a.replace("{bed}", name) for a in args)],
            env=streamer_env(**bed),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, bed in beds.items()
    }
    errors = {name: proc.communicate(timeout=timeout)[1] for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode in (0, 1), (name, errors[name][-2000:])
    return errors


@pytest.fixture(scope="module")
def beds(cluster: RedisClusterGroup, redis_url: str) -> Iterator[dict[str, Bed]]:
    """One node and the cluster, the synthetic features loaded in both under one prefix."""
    prefix = f"cc-{uuid.uuid4().hex[:8]}:"
    common = {"redis_key_prefix": prefix, "models_dir": str(REPO / "models")}
    both = {
        "one": {**common, "redis_url": redis_url},
        "cluster": {**common, "redis_url": cluster.url, "redis_mode": "cluster"},
    }
    _both(["features", "load", "--synthetic", "--cards", "3000", "--merchants", "300"], both)
    yield both
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _history(live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Four earlier purchases (10 to 40 minutes before) of each of the first live cards."""
    return [
        {**event, "transaction_id": f"{event['transaction_id']}-h{k}",
         "event_time": event["event_time"] - 600_000 * k}
        for event in live[:HISTORY_CARDS] for k in range(4, 0, -1)
    ]  # fmt: skip


def _answers(url: str, events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each event's answer, but what the server stamps (request id, its clock)."""
    with httpx.Client(base_url=url, timeout=30.0) as client:
        answers = {e["transaction_id"]: client.post("/v1/score", json=e).json() for e in events}
    return {t: _unstamped(a) for t, a in answers.items()}


def _unstamped(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in STAMPS}


def test_serve_scores_with_the_clusters_features_and_velocity_state_as_on_one_node(
    beds: dict[str, Bed], cluster: RedisClusterGroup, tmp_path: Path
) -> None:
    seen = {e["card_id"]: e for e in synthetic_events(400, seed=31)}
    live = list(seen.values())[:80]  # one event per card: the state is the history alone
    history = write_avro(tmp_path / "history.avro", _history(live))
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(serving(tmp_path, **bed)).url for name, bed in beds.items()
        }
        before = {name: _answers(url, live) for name, url in urls.items()}
        errors = _both(["features", "load", "--history", str(history)], beds)
        after = {name: _answers(url, live) for name, url in urls.items()}
    assert "seeded velocity state of 40 cards" in errors["cluster"]
    assert before["cluster"] == before["one"]
    assert after["cluster"] == after["one"]
    statuses = {a["feature_status"] for a in after["cluster"].values()}
    assert statuses == {"COMPLETE"}, statuses
    changed = {
        t for t, a in after["cluster"].items() if a["score"] != before["cluster"][t]["score"]
    }
    seeded = {e["transaction_id"] for e in live[:HISTORY_CARDS]}
    assert changed <= seeded  # only the cards with history score differently
    assert len(changed) > HISTORY_CARDS // 2  # and most do: their velocity state was read
    prefix = beds["cluster"]["redis_key_prefix"]
    assert all(count_keys(n, f"{prefix}vel:*") for n in primaries(cluster))


def test_score_file_and_the_gate_read_the_clusters_features_as_on_one_node(
    beds: dict[str, Bed], tmp_path: Path
) -> None:
    events = write_avro(tmp_path / "events.avro", synthetic_events(800, seed=32))
    out = str(tmp_path / "{bed}")
    _both(["score-file", str(events), f"{out}.parquet", "--chunk", "500"], beds)
    scored = {
        name: list(map(_unstamped, pq.read_table(tmp_path / f"{name}.parquet").to_pylist()))
        for name in beds
    }
    assert scored["cluster"] == scored["one"]
    statuses = Counter(row["feature_status"] for row in scored["cluster"])
    assert statuses == {"COMPLETE": 800}, statuses
    gate = ["models", "gate", "fraud-gbt@3", "--against", "fraud-gbt@champion"]
    _both([*gate, "--file", str(events), "--report", f"{out}.json"], beds)
    reports = {name: _replayed(tmp_path / f"{name}.json") for name in beds}
    assert reports["cluster"] == reports["one"]
    assert len(reports["cluster"]["checks"]) >= 5  # agreement, AUCs, rates


def _replayed(path: Path) -> dict[str, Any]:
    """What a gate report says of the replay: its checks and rates, not its batch times."""
    report = json.loads(path.read_text())
    checks = [c for c in report["checks"] if c["name"] != "p99_batch_ms"]
    return {"checks": checks, "rates": report["rates"]}
