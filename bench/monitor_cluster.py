"""The monitor's join state on one node and on a 3-primary Redis Cluster.

Writes N scored events (UUID ids, event times over 7 days) and a label for each through
``JoinState`` in batches of the monitor's size (1,000), timing each batch's ``add_scored``
and ``add_labels`` in this process and counting its socket writes (``send_packed_command``
calls: one per node per round trip); then reads the 7-day window back as ``monitor report``
and the gauges do (``read_window``). Both servers run on this machine; prints a table and
writes JSON (bench/results/monitor-cluster.json).

    .venv/bin/python bench/monitor_cluster.py --events 50000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from redis_cluster import SENDS, on_both  # noqa: E402

from streamer.monitor.records import ScoredRow, pack_label, pack_scored  # noqa: E402
from streamer.monitor.report import read_window  # noqa: E402
from streamer.monitor.state import JoinState, LabelWrite, ScoredWrite  # noqa: E402

DAY_MS = 86_400_000


def measure(client: Any, events: int, batch: int) -> dict[str, float]:
    state = JoinState(client, "bench:", 120 * DAY_MS)
    now = int(time.time() * 1000)
    version = state.interner.id("version", "fraud-gbt@2")
    rng = np.random.default_rng(3)
    scored, labelled, sends = [], [], []
    for _ in range(0, events, batch):
        ids = [str(uuid.uuid4()) for _ in range(batch)]
        writes = []
        for t in ids:
            row = ScoredRow(t, now - int(rng.integers(0, 7 * DAY_MS)), 100, "EUR",
                            float(rng.random()), "APPROVE", version)  # fmt: skip
            writes.append(ScoredWrite(t, pack_scored(row), row.hour, version))
        labels = [LabelWrite(t, pack_label(now, int(rng.integers(0, 3)), 1)) for t in ids]
        SENDS["n"] = 0
        t0 = time.perf_counter()
        state.add_scored(writes)
        t1 = time.perf_counter()
        applied = state.add_labels(labels)
        t2 = time.perf_counter()
        assert applied.joined == batch, applied
        scored.append(t1 - t0)
        labelled.append(t2 - t1)
        sends.append(SENDS["n"])
    started = time.perf_counter()
    window = read_window(state, now - 7 * DAY_MS - 3_600_000, now + 3_600_000)
    read_s = time.perf_counter() - started
    assert len(window.joined) == events, len(window.joined)
    warm = slice(len(scored) // 10, None)  # the first tenth connects and loads scripts
    return {
        "scored_ms_p50": 1000 * float(np.median(scored[warm])),
        "labels_ms_p50": 1000 * float(np.median(labelled[warm])),
        "sends_per_batch": float(np.mean(sends[warm])),
        "read_window_s": round(read_s, 2),
        "events": events,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/monitor-cluster.json")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = on_both(lambda client: measure(client, args.events, args.batch), timeout_ms=5000)
    print(f"{args.batch}-message batches, {args.events} events; load {load:.1f}")
    for name, r in results.items():
        print(
            f"{name:22} scored p50 {r['scored_ms_p50']:6.1f} ms  labels p50 "
            f"{r['labels_ms_p50']:6.1f} ms  socket writes per batch {r['sends_per_batch']:.1f}"
            f"  7-day window read {r['read_window_s']:.2f} s"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.json.write_text(json.dumps({"when": when, "load": load, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
