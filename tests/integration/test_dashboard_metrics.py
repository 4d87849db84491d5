"""The Grafana dashboard against a real streamer: every metric a panel queries is exported.

A dashboard panel on a metric that does not exist shows "No data" forever, which looks the
same as "nothing happened". This runs ``streamer run`` on the real broker and Redis, sends
valid events and a poison message (so labelled counters such as dead letters have samples),
and scrapes ``/metrics`` on the operations port, where ``/healthz`` and ``/readyz`` live too.
"""

from __future__ import annotations

import time

from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from streamer.dev.devstack.processes import free_port
from streamer.dev.generator import send_synthetic
from tests.fixtures import dashboard as dash
from tests.integration.conftest import Bed
from tests.integration.streamer_proc import (
    http_get,
    load_synthetic_features,
    start_streamer,
    stop,
    wait_caught_up,
)

EVENTS = 2000


def _exported(port: int) -> set[str]:
    """Names of the samples /metrics has now (what PromQL can select)."""
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return set()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_metric_the_dashboard_queries_is_exported(bed: Bed) -> None:
    used = {
        k: v
        for k, v in dash.used_metrics().items()
        if k not in dash.AFTER_A_REFUSAL and not k.startswith(dash.MONITOR_PREFIX)
    }
    assert len(used) >= 10, f"the dashboard queries suspiciously few metrics: {sorted(used)}"
    load_synthetic_features(bed.redis_url, bed.prefix)
    send_synthetic(
        topic=bed.topics["input_topic"],
        bootstrap_servers=bed.kafka,
        count=EVENTS,
        n_cards=3000,
        n_merchants=300,
        event_seed=21,
    )
    producer = Producer({"bootstrap.servers": bed.kafka})
    producer.produce(bed.topics["input_topic"], b"not avro at all", b"poison")
    producer.flush(30)

    port = free_port()
    log = bed.tmp / "streamer.log"
    # A shadow model, so the shadow panels' metrics have samples; exactly-once, so the
    # transaction panels' have too (it exports every at-least-once metric as well).
    settings = {
        **bed.settings,
        "metrics_port": str(port),
        "shadow_model": "fraud-gbt@1",
        "processing_guarantee": "exactly-once",
    }
    proc = start_streamer(log, **settings)
    try:
        wait_caught_up(bed.kafka, bed.group, bed.topics["input_topic"], 120, proc)
        # Gauges such as the lag are refreshed by the loop: give it a few iterations.
        deadline = time.monotonic() + 30
        exported = _exported(port)
        while set(used) - exported and time.monotonic() < deadline:
            time.sleep(0.5)  # why: poll interval of the wait for every gauge above
            exported = _exported(port)
        health, _ = http_get(f"http://127.0.0.1:{port}/healthz")
        ready, ready_body = http_get(f"http://127.0.0.1:{port}/readyz")
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]

    missing = {name: sorted(where) for name, where in used.items() if name not in exported}
    assert not missing, (
        f"the dashboard queries metrics /metrics does not export (name: panels): {missing}; "
        f"exported: {sorted(n for n in exported if n.startswith('streamer_'))}"
    )
    assert health == 200
    assert ready == 200, ready_body
