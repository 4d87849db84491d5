"""``streamer monitor`` end to end on the real broker and Redis, as a process: labels that
arrive before their score, late labels, duplicate and contradicting labels, labels for
transactions never scored, a kill -9 mid-stream; every figure of ``monitor report`` equals
scikit-learn's on the same joined data. A degraded model swapped in mid-stream shows a
recall drop for its version alone, in the report and in the gauges the alert compares."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from streamer.dev.devstack.processes import free_port
from streamer.dev.devstack.redis_cluster import RedisClusterGroup
from tests.fixtures import dashboard as dash
from tests.integration.cluster_helpers import count_keys, primaries
from tests.integration.monitor_helpers import (
    SHUFFLED,
    V1,
    V2,
    Model,
    produce,
    reference,
    report,
    serve,
    start_monitor,
)
from tests.integration.streamer_proc import (
    committed_total,
    end_offsets,
    http_get,
    stop,
    streamer_env,
    wait_caught_up,
    wait_until,
)

HOUR_MS, DAY_MS = 3_600_000, 86_400_000


@pytest.fixture
def monitor_settings(
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    group_id: str,
    make_topic: Callable[..., str],
) -> dict[str, str]:
    return {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "redis_url": redis_url,
        "redis_key_prefix": redis_prefix,
        "output_topic": make_topic("scored", partitions=3),
        "labels_topic": make_topic("labels", partitions=2),
        "monitor_group_id": group_id,
        "output_format": "single-object",
        "input_format": "single-object",
        "metrics_port": str(free_port()),
    }


def _caught_up(s: dict[str, str], proc: Any, timeout: float = 180) -> None:
    for topic in (s["output_topic"], s["labels_topic"]):
        wait_caught_up(s["kafka_bootstrap_servers"], s["monitor_group_id"], topic, timeout, proc)


def _assert_agrees(
    rows: list[dict[str, Any]], expected: dict[str, dict[str, Any]], role: str
) -> None:
    got = {r["model_version"]: r for r in rows if r["role"] == role}
    assert set(got) == set(expected), (got.keys(), expected.keys())
    for version, want in expected.items():
        row = got[version]
        for count in ("labelled", "fraud", "flagged_fraud", "flagged_legitimate", "missed_fraud"):
            assert row[count] == want[count], (role, version, count)
        assert row["recall"] == want["flagged_fraud"] / want["fraud"]
        flagged = want["flagged_fraud"] + want["flagged_legitimate"]
        assert row["precision"] == want["flagged_fraud"] / flagged
        assert row["roc_auc"] == pytest.approx(want["roc_auc"], abs=0.005)
        assert row["pr_auc"] == pytest.approx(want["pr_auc"], abs=0.005)


def test_labels_in_any_order_with_duplicates_and_unknowns_agree_with_scikit_learn(
    monitor_settings: dict[str, str], tmp_path: Path
) -> None:
    s = monitor_settings
    bootstrap = s["kafka_bootstrap_servers"]
    start = (int(time.time() * 1000) // HOUR_MS) * HOUR_MS - 8 * DAY_MS
    served = serve(
        6000, seed=21, start_ms=start, champions=[(Model(V2, "2"), 1.0)], shadow=Model(V1, "1")
    )
    early, late = served.labels[::2], served.labels[1::2]
    produce(bootstrap, s["labels_topic"], early, "label")  # labels before their scores
    proc = start_monitor(tmp_path / "monitor.log", "--refresh-s", "1", **s)
    try:
        wait_caught_up(bootstrap, s["monitor_group_id"], s["labels_topic"], 120, proc)
        produce(bootstrap, s["output_topic"], served.scored, "scored")
        produce(bootstrap, s["labels_topic"], late, "label")  # labels after their scores
        flipped = [  # duplicates that contradict: the first label of a transaction wins
            {**x, "label": "LEGITIMATE" if x["label"] != "LEGITIMATE" else "FRAUD"}
            for x in served.labels
        ]
        unknown = [
            {**x, "transaction_id": str(uuid.uuid4()), "label": "FRAUD"}
            for x in served.labels[:300]
        ]
        produce(bootstrap, s["labels_topic"], served.labels + flipped + unknown, "label")
        garbage = Producer({"bootstrap.servers": bootstrap})
        for topic in (s["output_topic"], s["labels_topic"]):  # bad bytes: counted, skipped
            garbage.produce(topic, b"\xc3\x01not avro at all", b"poison")
        assert garbage.flush(30) == 0
        _caught_up(s, proc)
        gauges = _gauges(int(s["metrics_port"]))
    finally:
        assert stop(proc) == 0, (tmp_path / "monitor.log").read_text()[-3000:]
    result = report(start - HOUR_MS, start + 8 * DAY_MS, **s)
    _assert_agrees(result["versions"], reference(served.scored, served.labels), "champion")
    _assert_agrees(result["versions"], reference(served.scored, served.labels, "shadow"), "shadow")
    (champion,) = [r for r in result["versions"] if r["role"] == "champion"]
    assert champion["scored"] == len(served.scored)
    assert champion["unlabelled_share"] == pytest.approx(1 - len(served.labels) / 6000)
    assert champion["label_delay_days"]["p50"] > 1
    rejected = {
        key[2]: value
        for key, value in gauges.items()
        if key[0] == "streamer_monitor_messages_total" and key[1] == "result=rejected"
    }
    assert rejected == {"topic=scored": 1, "topic=labels": 1}


def _kill_9_mid_stream(s: dict[str, str], log: Path) -> None:
    """A slow monitor (batches of 20) killed with -9 once it has committed a tenth of the
    scored topic, before it has all: what it wrote but did not commit will be replayed."""
    bootstrap, group, topic = s["kafka_bootstrap_servers"], s["monitor_group_id"], s["output_topic"]
    total = sum(end_offsets(bootstrap, topic).values())
    proc = start_monitor(log, "--batch-size", "20", **s)
    wait_until(
        lambda: committed_total(bootstrap, group, topic) > total // 10,
        120,
        "the monitor to commit part of the scored topic",
        proc,
    )
    proc.kill()
    proc.wait(30)
    assert committed_total(bootstrap, group, topic) < total


def test_a_monitor_killed_mid_stream_counts_nothing_twice(
    monitor_settings: dict[str, str], tmp_path: Path
) -> None:
    s = monitor_settings
    bootstrap = s["kafka_bootstrap_servers"]
    start = (int(time.time() * 1000) // HOUR_MS) * HOUR_MS - 8 * DAY_MS
    served = serve(30_000, seed=22, start_ms=start, champions=[(Model(V2, "2"), 1.0)])
    produce(bootstrap, s["output_topic"], served.scored, "scored")
    produce(bootstrap, s["labels_topic"], served.labels, "label")
    log = tmp_path / "monitor.log"
    _kill_9_mid_stream(s, log)
    proc = start_monitor(log, **s)
    try:
        _caught_up(s, proc)
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
    result = report(start - HOUR_MS, start + 8 * DAY_MS, **s)
    _assert_agrees(result["versions"], reference(served.scored, served.labels), "champion")
    assert result["versions"][0]["scored"] == 30_000


def test_on_a_redis_cluster_a_monitor_killed_mid_stream_reports_what_one_node_reports(
    monitor_settings: dict[str, str], cluster: RedisClusterGroup, tmp_path: Path
) -> None:
    one = monitor_settings
    s = {**one, "redis_url": cluster.url, "redis_mode": "cluster"}
    bootstrap = s["kafka_bootstrap_servers"]
    start = (int(time.time() * 1000) // HOUR_MS) * HOUR_MS - 8 * DAY_MS
    served = serve(
        8000, seed=23, start_ms=start, champions=[(Model(V2, "2"), 1.0)], shadow=Model(V1, "1")
    )
    _log_inputs(served.scored, 6)
    produce(bootstrap, s["labels_topic"], served.labels[::2], "label")  # before their scores
    produce(bootstrap, s["output_topic"], served.scored, "scored")
    produce(bootstrap, s["labels_topic"], served.labels[1::2] + served.labels, "label")
    log = tmp_path / "monitor.log"
    _kill_9_mid_stream(s, log)
    # The same topics on one Redis node, by a monitor of another group, not interrupted.
    one |= {"monitor_group_id": f"{one['monitor_group_id']}-one", "metrics_port": str(free_port())}
    procs = [start_monitor(log, **s), start_monitor(tmp_path / "one.log", **one)]
    try:
        _caught_up(s, procs[0])
        _caught_up(one, procs[1])
    finally:
        assert [stop(p) for p in procs] == [0, 0], log.read_text()[-3000:]
    since, until = start - HOUR_MS, start + 8 * DAY_MS
    on_cluster = report(since, until, **s)
    assert on_cluster == report(since, until, **one)
    for role in ("champion", "shadow"):
        _assert_agrees(on_cluster["versions"], reference(served.scored, served.labels, role), role)
    assert on_cluster["versions"][0]["scored"] == 8000
    exports = [_export(settings, tmp_path / f"{n}.parquet") for n, settings in enumerate((s, one))]
    assert [p.communicate(timeout=120)[1] for p in exports] == [None, None]
    assert [p.returncode for p in exports] == [0, 0]
    rows = [_rows(tmp_path / f"{n}.parquet") for n in range(2)]
    assert rows[0] == rows[1]  # the labelled events and their logged inputs, as on one node
    assert len(rows[0]) == len({x["transaction_id"] for x in served.labels})
    assert any(row["feature.amount"] is not None for row in rows[0])
    per_primary = [count_keys(n, f"{s['redis_key_prefix']}mon:*") for n in primaries(cluster)]
    assert len(per_primary) == 3, per_primary
    assert min(per_primary) > 0, per_primary  # the shards spread over every primary


def _gauges(port: int) -> dict[tuple[str, ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    return {
        (s.name, *(f"{k}={v}" for k, v in sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("streamer_monitor_")
    }


def test_a_degraded_version_shows_a_recall_drop_for_itself_alone(
    monitor_settings: dict[str, str], tmp_path: Path
) -> None:
    s = monitor_settings
    bootstrap = s["kafka_bootstrap_servers"]
    # A week of events ending with the current hour, so the windows (whole hours up to now)
    # hold the same events whatever the minute: the last 3 days are the current window.
    start = (int(time.time() * 1000) // HOUR_MS + 1) * HOUR_MS - 7 * DAY_MS
    swap = [(Model(V2, "2"), 6 / 7), (Model(SHUFFLED, "9"), 1 / 7)]  # swapped in for a day
    served = serve(40_000, seed=23, start_ms=start, champions=swap)
    produce(bootstrap, s["output_topic"], served.scored, "scored")
    produce(bootstrap, s["labels_topic"], served.labels, "label")
    log = tmp_path / "monitor.log"
    proc = start_monitor(log, "--window-hours", "72", "--refresh-s", "1", **s)
    try:
        _caught_up(s, proc)
        caught_up = time.time()

        def refreshed() -> bool:
            return (
                _gauges(int(s["metrics_port"])).get(
                    ("streamer_monitor_refresh_timestamp_seconds",), 0
                )
                > caught_up
            )

        wait_until(refreshed, 30, "the gauges to be recomputed", proc)
        gauges = _gauges(int(s["metrics_port"]))
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]

    def recall(version: str, window: str) -> float:
        key = ("streamer_monitor_recall", f"model_version={version}", "role=champion")
        return gauges[(*key, "threshold=review", f"window={window}")]

    # The alert's comparison (helm: StreamerMonitorRecallDrop): a version's recall this
    # window against every version's in the window before.
    baseline = recall("all", "previous")
    assert recall("9", "current") < 0.7 * baseline, gauges
    assert recall("2", "current") >= 0.7 * baseline, gauges
    assert (
        "streamer_monitor_recall",
        "model_version=9",
        "role=champion",
        "threshold=review",
        "window=previous",
    ) not in gauges

    # Every monitor metric the dashboard row and the alerts query is exported.
    used = {n for n in dash.used_metrics() if n.startswith(dash.MONITOR_PREFIX)}
    assert used | {"streamer_monitor_fraud_events"} <= {key[0] for key in gauges}

    result = report(start - HOUR_MS, start + 8 * DAY_MS, **s)
    _assert_agrees(result["versions"], reference(served.scored, served.labels), "champion")
    rows = {r["model_version"]: r for r in result["versions"]}
    assert rows["9"]["recall"] < 0.5 * rows["2"]["recall"]
    assert rows["9"]["pr_auc"] < 0.5 * rows["2"]["pr_auc"]
    _the_chart_alert_fires_on(gauges, tmp_path)


def _the_chart_alert_fires_on(gauges: dict[tuple[str, ...], float], tmp: Path) -> None:
    """The chart's StreamerModelRecallDrop, evaluated by promtool on the real monitor's
    gauges (held for 70 minutes, past the rule's ``for``), fires for the degraded version
    and not for the version it replaced."""
    from tests.deploy.tools import built_tool, render
    from tests.fixtures.promtool import promtool, rule_test, series_name

    docs = render(built_tool("helm.sh"), "monitor.enabled=true", "prometheusRule.enabled=true")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    scrape = {"job": "fraud-streamer-monitor-metrics", "namespace": "payments"}
    series = {
        series_name(key[0], {**scrape, **dict(kv.split("=", 1) for kv in key[1:])}): value
        for key, value in gauges.items()
        if key[0] in ("streamer_monitor_recall", "streamer_monitor_fraud_events")
    }

    def recall(version: str, window: str) -> float | None:
        key = ("streamer_monitor_recall", f"model_version={version}", "role=champion")
        return gauges.get((*key, "threshold=review", f"window={window}"))

    def fraud(version: str) -> float:
        key = ("streamer_monitor_fraud_events", f"model_version={version}", "role=champion")
        return gauges.get((*key, "window=current"), 0)

    baseline = recall("all", "previous")
    assert baseline is not None
    dropped = [
        v
        for v in ("2", "9", "all")
        if (r := recall(v, "current")) is not None and r < 0.8 * baseline and fraud(v) >= 30
    ]
    assert "9" in dropped
    assert "2" not in dropped
    done = rule_test(
        promtool(),
        rule,
        "fraud-streamer.model-performance",
        series,
        minutes=70,
        alert="StreamerModelRecallDrop",
        expected=[{"severity": "warning", "role": "champion", "model_version": v} for v in dropped],
        tmp=tmp,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _rows(path: Path) -> list[dict[str, Any]]:
    """An export's rows, NaN (no logged input) as None so that rows compare equal."""
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    rows = [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in rows
    ]
    return sorted(rows, key=lambda row: str(row["transaction_id"]))


def _export(s: dict[str, str], out: Path) -> subprocess.Popen[str]:
    """``streamer monitor export`` of the last 9 days to ``out``, started (stdout piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamer", "monitor", "export", "--since", "9d", "--out", str(out)],
        env=streamer_env(**s),
        stdout=subprocess.PIPE,
        text=True,
    )


def _log_inputs(scored: list[dict[str, Any]], seed: int) -> dict[str, dict[str, float]]:
    """Every other scored event carries three logged inputs (as with feature logging)."""
    rng = np.random.default_rng(seed)
    logged: dict[str, dict[str, float]] = {}
    for record in scored[::2]:
        values = rng.random(3).astype(np.float32)
        names = ("amount", "mcc", "txn_count_1h")
        record["features"] = dict(zip(names, map(float, values), strict=True))
        logged[record["transaction_id"]] = record["features"]
    return logged


def test_logged_inputs_on_the_scored_topic_become_the_training_set(
    monitor_settings: dict[str, str], tmp_path: Path
) -> None:
    """Scored events carrying ``features`` (STREAMER_FEATURE_LOGGING=true) through the
    real topic: the export holds each value exactly (float32, what the model saw), and the
    events scored without them are named for an offline rebuild."""
    import pyarrow.parquet as pq

    s = monitor_settings
    bootstrap = s["kafka_bootstrap_servers"]
    start = int(time.time() * 1000) - 7 * DAY_MS - HOUR_MS  # 7 days of events, up to now
    served = serve(1500, seed=24, start_ms=start, champions=[(Model(V2, "2"), 1.0)])
    logged = _log_inputs(served.scored, 5)  # half the stream ran with feature logging
    produce(bootstrap, s["output_topic"], served.scored, "scored")
    produce(bootstrap, s["labels_topic"], served.labels, "label")
    log = tmp_path / "monitor.log"
    proc = start_monitor(log, **s)
    try:
        _caught_up(s, proc)
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
    out = tmp_path / "labelled.parquet"
    done = _export(s, out).communicate(timeout=120)[0]
    rows = pq.read_table(out).to_pylist()
    labelled = {x["transaction_id"] for x in served.labels}
    assert {r["transaction_id"] for r in rows} == labelled
    for row in rows:
        features = logged.get(row["transaction_id"])
        if features is None:
            assert np.isnan(row["feature.amount"])
        else:
            assert {k: row[f"feature.{k}"] for k in features} == features
    without = sum(1 for t in labelled if t not in logged)
    assert f"{without} events have no logged inputs" in done
    assert "fraud-gbt@2: amount, log_amount," in done
