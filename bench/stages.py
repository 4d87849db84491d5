"""The per-stage latency breakdown of a fixed-rate phase.

Two sources, because neither alone tells the whole story:

- per event, from the scored record itself and the broker: ``event_time`` (stamped by the
  sender), ``received_time`` (the kernel took the batch: consume wait + decode),
  ``publish_time`` (scored: validate + enrich + score) and the output's LogAppendTime
  (encode, produce queue, linger, the broker's acknowledgement). Exact per event, so p50
  and p99 are real.
- per batch, the streamer's own ``streamer_stage_duration_seconds`` histograms read from
  its ``/metrics`` before and after the phase (decode, validate, enrich, score, publish);
  percentiles interpolated inside Prometheus buckets, so coarse, but the mean is exact.
  Exactly-once adds ``streamer_transaction_commit_seconds`` as the pseudo-stage
  ``transaction commit`` (one a transaction, not a batch), and every streamer its own
  end-to-end latency, ``streamer_end_to_end_latency_seconds`` (event time to when it knew
  of the acknowledgement), as ``acknowledged, by streamer's own clock`` (one an event):
  beside the per-event ``end to end`` (to the broker's append time) it shows how late
  streamer learns of acknowledgements.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

Histograms = dict[str, dict[float, float]]  # stage -> upper bound -> cumulative count
STAGE_METRIC = "streamer_stage_duration_seconds"
COMMIT_METRIC = "streamer_transaction_commit_seconds"
COMMIT = "transaction commit"
LATENCY_METRIC = "streamer_end_to_end_latency_seconds"
ACKNOWLEDGED = "acknowledged, by streamer's own clock"
PSEUDO_STAGES = {COMMIT_METRIC: COMMIT, LATENCY_METRIC: ACKNOWLEDGED}


def scrape(port: int) -> tuple[Histograms, dict[str, float]]:
    """Stage histograms (cumulative buckets) and sums from a running streamer's /metrics."""
    if not port:
        return {}, {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}, {}
    buckets: Histograms = {}
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != STAGE_METRIC and family.name not in PSEUDO_STAGES:
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage", PSEUDO_STAGES.get(family.name, ""))
            if sample.name.endswith("_bucket"):
                buckets.setdefault(stage, {})[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                sums[stage] = sample.value
    return buckets, sums


def per_batch(
    before: tuple[Histograms, dict[str, float]], after: tuple[Histograms, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """Per stage: batches, mean, p50 and p99 (ms) of the batches between two scrapes."""
    out: dict[str, dict[str, float]] = {}
    for stage, upper in after[0].items():
        lower = before[0].get(stage, {})
        bounds = sorted(upper)
        counts = np.array([upper[b] - lower.get(b, 0.0) for b in bounds])
        total = counts[-1] if counts.size else 0.0
        if total <= 0:
            continue
        spent = after[1].get(stage, 0.0) - before[1].get(stage, 0.0)
        out[stage] = {
            "batches": float(total),
            "mean_ms": 1000 * spent / total,
            "p50_ms": 1000 * _quantile(bounds, counts, 0.5),
            "p99_ms": 1000 * _quantile(bounds, counts, 0.99),
        }
    return out


def _quantile(bounds: list[float], cumulative: Any, q: float) -> float:
    """Prometheus' histogram_quantile: linear inside the bucket holding the rank."""
    rank = q * cumulative[-1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in zip(bounds, cumulative, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            inside = (rank - previous_count) / max(count - previous_count, 1e-9)
            return float(previous_bound + (bound - previous_bound) * inside)
        previous_bound, previous_count = bound, count
    return previous_bound


def per_event(rows: list[tuple[int, int, int, int]]) -> dict[str, dict[str, float]]:
    """p50/p99 (ms) of each span of (append, event, received, published) times."""
    if not rows:
        return {}
    a = np.array(rows, dtype=np.float64)
    appended, event, received, published = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    spans = {"end to end": appended - event}
    if received.all():  # a streamer's scored records (a passthrough's have no such times)
        spans = {
            "consume wait + decode": received - event,
            "validate + enrich + score": published - received,
            "encode + produce + broker ack": appended - published,
            **spans,
        }
    return {
        name: {
            "p50_ms": float(np.percentile(v, 50)),
            "p99_ms": float(np.percentile(v, 99)),
            "mean_ms": float(v.mean()),
        }
        for name, v in spans.items()
    }
