"""The progress line: what an operator reads every interval, first line included."""

from __future__ import annotations

import json
import logging
import math

import pytest

from streamer.kafka.loop import LoopStats
from streamer.observability.metrics import LATENCY_BUCKETS, BatchHistogram
from streamer.observability.progress import ProgressLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _line(latencies_s: list[float], caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    stats, histogram, clock = LoopStats(), BatchHistogram(LATENCY_BUCKETS), Clock()
    progress = ProgressLog(stats, histogram, interval_s=30.0, clock=clock)
    histogram.observe(latencies_s)
    stats.consumed = stats.scored = len(latencies_s)
    clock.now = 31.0
    with caplog.at_level(logging.INFO, logger="streamer.progress"):
        progress.lag({("transactions", 0): 7})
    (record,) = caplog.records
    return record


def test_the_first_line_after_a_backlog_says_above_the_last_bucket_not_inf(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Events that waited in the topic while the stream was down: minutes of latency."""
    record = _line([0.02] * 10 + [120.0] * 990, caplog)
    message = record.getMessage()
    assert "inf" not in message
    assert message.endswith("p99 > 30000 ms")
    assert record.p99_ms is None  # type: ignore[attr-defined]
    assert record.p99_above_ms == 30000.0  # type: ignore[attr-defined]
    # the structured fields survive a strict JSON encoder (no Infinity)
    fields = {"p99_ms": record.p99_ms, "p99_above_ms": record.p99_above_ms}  # type: ignore[attr-defined]
    json.dumps(fields, allow_nan=False)


@pytest.mark.parametrize(
    ("latencies_s", "words", "p99_ms"),
    [
        ([0.004] * 1000, "p99 <= 5 ms", 5.0),
        ([0.004] * 980 + [0.2] * 20, "p99 <= 250 ms", 250.0),
        ([], "p99 n/a", None),
    ],
)
def test_a_steady_line_names_the_bucket_bound(
    latencies_s: list[float],
    words: str,
    p99_ms: float | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = _line(latencies_s, caplog)
    assert record.getMessage().endswith(words)
    assert record.p99_ms == p99_ms  # type: ignore[attr-defined]
    assert p99_ms is None or math.isfinite(p99_ms)
