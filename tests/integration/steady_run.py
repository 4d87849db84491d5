"""A streamer run on a steady stream, for the model-upgrade tests: start it, let it score
steadily, act (promote, signal, corrupt), keep the stream going, stop cleanly, and read
back what came out; plus the operations port as a dict."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.streamer_proc import (
    committed_total,
    http_get,
    start_streamer,
    stop,
    wait_caught_up,
    wait_until,
)
from tests.integration.swap_helpers import Output, SteadyStream, input_ids, now_ms, read_outputs

RATE = 500.0  # events/s of steady traffic
BASELINE_S, TAIL_S = 3.0, 4.0  # steady traffic before and after the action


def log_append_topics(
    admin: AdminClient, make_topic: Callable[..., str], unique: str, run: str = ""
) -> Iterator[dict[str, str]]:
    """As the shared fixture, but the scored topic stamps LogAppendTime (as the demo's), so
    output gaps are measured by the broker, not by the process under test. ``run`` tells
    apart the sets of one test that streams more than once."""
    scored = f"t-{unique}-scored{run}"
    config = {"message.timestamp.type": "LogAppendTime"}
    admin.create_topics([NewTopic(scored, 3, 1, config=config)])[scored].result(timeout=30)
    yield {
        "input_topic": make_topic(f"in{run}", partitions=3),
        "output_topic": scored,
        "dlq_topic": make_topic(f"in{run}.dlq", partitions=1),
    }
    admin.delete_topics([scored])[scored].exception(timeout=30)


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` as {'name{k="v",...}': value}."""
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def swap_settings(run_settings: dict[str, str], models_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **run_settings,
        "models_dir": str(models_dir),
        "model": "fraud-gbt@champion",
        "model_watch_interval_s": "1",
        **extra,
    }


@dataclass(frozen=True)
class Run:
    """A steady run: how many events were sent, and when the streamer had caught up with
    the stream and when the stream stopped (the window where stalls are measured)."""

    sent: int
    steady_ms: int
    stopped_ms: int


def stream_with(
    bootstrap: str,
    topics: dict[str, str],
    group: str,
    settings: dict[str, str],
    log: Path,
    action: Callable[[subprocess.Popen[bytes]], None],
) -> Run:
    """Run a streamer on a steady stream; ``action`` runs after BASELINE_S of steady
    scoring, and the stream goes on for TAIL_S after it."""
    stream = SteadyStream(bootstrap, topics["input_topic"], RATE, seed=31)
    proc = start_streamer(log, **settings)
    try:
        wait_until(
            lambda: committed_total(bootstrap, group, topics["input_topic"]) > 1500,
            120,
            "steady scoring",
            proc,
        )
        steady = now_ms()
        time.sleep(BASELINE_S)  # why: a fixed window of steady traffic to compare against
        action(proc)
        time.sleep(TAIL_S)  # why: a fixed window of traffic after the action, measured
        sent, stopped = stream.stop(), now_ms()
        wait_caught_up(bootstrap, group, topics["input_topic"], 120, proc)
    finally:
        code = stop(proc)
        stream.stop()
    assert code == 0, log.read_text()[-3000:]
    return Run(sent, steady, stopped)


def exactly_once(bootstrap: str, topics: dict[str, str], sent: int) -> list[Output]:
    ids = input_ids(bootstrap, topics["input_topic"], sent)
    outputs = read_outputs(bootstrap, topics["output_topic"], sent)
    assert len(ids) == len(set(ids)) == sent
    scored = Counter(o.record["transaction_id"] for o in outputs)
    assert set(scored) == set(ids), f"{len(set(ids) - set(scored))} inputs have no output"
    assert max(scored.values()) == 1, f"scored twice: {[t for t, n in scored.items() if n > 1][:5]}"
    return outputs
