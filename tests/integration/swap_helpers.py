"""Helpers for the model-upgrade tests: a private model registry, the promote CLI, a steady
stream, and the scored topic read back with the broker's append times."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Producer

from streamer.codec.schemas import transaction_schema
from streamer.codec.wire import make_encoder
from streamer.dev.generator import produce_synthetic
from tests.integration.streamer_proc import (
    REPO,
    decode_single_object,
    plain_schema,
    read_all,
    streamer_env,
)

MODEL = "fraud-gbt"
CARDS, MERCHANTS = 3000, 300  # what load_synthetic_features writes


def private_registry(root: Path) -> Path:
    """A copy of the shipped registry the test may promote in and corrupt: its aliases and
    versions 1 and 2, the ones these tests are written around (``add_challenger`` makes a
    version 3 of its own)."""
    models = root / "models"
    shutil.copytree(REPO / "models" / MODEL, models / MODEL)
    for version in (models / MODEL).iterdir():
        if version.name.isdigit() and int(version.name) > 2:
            shutil.rmtree(version)
    return models


def promote(models_dir: Path, version: str, alias: str = "champion") -> None:
    """``streamer models promote`` exactly as an ML engineer runs it."""
    args = ["models", "promote", f"{MODEL}@{version}", "--alias", alias, "--reason", "test"]
    done = subprocess.run(
        [sys.executable, "-m", "streamer", *args, "--models-dir", str(models_dir)],
        check=False,
        env=streamer_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def add_challenger(models_dir: Path, version: str = "3", scale: float = 1.5) -> Path:
    """A version that really scores differently: version 2's trees with every leaf value
    scaled (so a shadow that copied the champion's scores would be caught), its own
    thresholds, and metadata whose sha256 matches the new file."""
    import onnx  # the test extra has it; only this helper needs it

    source, target = models_dir / MODEL / "2", models_dir / MODEL / version
    target.mkdir()
    model = onnx.load(str(source / "model.onnx"))
    (tree,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"]
    (weights,) = [a for a in tree.attribute if a.name == "class_weights"]
    scaled = [w * scale for w in weights.floats]
    del weights.floats[:]
    weights.floats.extend(scaled)
    onnx.save(model, str(target / "model.onnx"))
    meta = json.loads((source / "metadata.json").read_text())
    meta["version"] = version
    meta["sha256"] = hashlib.sha256((target / "model.onnx").read_bytes()).hexdigest()
    meta["thresholds"] = {"review": 0.05, "decline": 0.5}
    meta.pop("explainer", None)  # version 2's explainer explains version 2's trees only
    (target / "metadata.json").write_text(json.dumps(meta, indent=2))
    return target


class SteadyStream:
    """Synthetic events at ``rate`` per second in the background, one second's worth at a
    time, until ``stop``: the stream goes on as long as the test needs it, however long the
    streamer took to start on a loaded machine."""

    def __init__(self, bootstrap: str, topic: str, rate: float, seed: int) -> None:
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(bootstrap, topic, rate, seed), daemon=True
        )
        self._thread.start()

    def _run(self, bootstrap: str, topic: str, rate: float, seed: int) -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        encoder = make_encoder("single-object", schema=transaction_schema())
        chunk = int(rate)
        while not self._stop.is_set():
            self.sent += produce_synthetic(
                producer,
                encoder,
                topic=topic,
                count=chunk,
                rate=rate,
                n_cards=CARDS,
                n_merchants=MERCHANTS,
                event_seed=seed + self.sent,
            )

    def stop(self) -> int:
        """Stop after the current second; how many events were sent."""
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the producer did not stop"
        return self.sent


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Output:
    """One scored event as a fraud service sees it, with the broker's append time."""

    record: dict[str, Any]
    appended_ms: int

    @property
    def version(self) -> str:
        return str(self.record["model_version"])


def read_outputs(bootstrap: str, topic: str, expected: int) -> list[Output]:
    """Every scored event of ``topic`` (a LogAppendTime topic), decoded with plain fastavro."""
    schema = plain_schema("scored_event")
    out = []
    for msg in read_all(bootstrap, topic, expected):
        kind, stamp = msg.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME, "the scored topic must use LogAppendTime"
        out.append(Output(decode_single_object(msg.value(), schema), stamp))
    return out


def input_ids(bootstrap: str, topic: str, expected: int) -> list[str]:
    schema = plain_schema("transaction_event")
    return [
        decode_single_object(m.value(), schema)["transaction_id"]
        for m in read_all(bootstrap, topic, expected)
    ]


def versions_by_partition(outputs: list[Output]) -> dict[int, list[str]]:
    """Each input partition's model versions in source offset order."""
    parts: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for o in outputs:
        parts[o.record["source_partition"]].append((o.record["source_offset"], o.version))
    return {p: [v for _, v in sorted(rows)] for p, rows in parts.items()}


def assert_one_switch(outputs: list[Output], old: str, new: str) -> None:
    """Per partition, every output before a point is ``old`` and every one after is ``new``;
    across partitions, the last ``old`` batch was scored no later than the first ``new``."""
    for partition, versions in versions_by_partition(outputs).items():
        k = versions.index(new) if new in versions else len(versions)
        assert k > 0, f"partition {partition}: no output from {old} before the switch"
        assert versions[:k] == [old] * k, f"partition {partition}: {old} after {new}"
        assert versions[k:] == [new] * (len(versions) - k), f"partition {partition}: mixed"
    last_old = max(o.record["scored_time"] for o in outputs if o.version == old)
    first_new = min(o.record["scored_time"] for o in outputs if o.version == new)
    assert last_old <= first_new, "two versions scored at the same time: not a batch boundary"


def longest_stall_ms(outputs: list[Output], start_ms: int, end_ms: int) -> tuple[int, int]:
    """(ms, when) of the longest time the stream had an event waiting and published nothing,
    among outputs appended within [start_ms, end_ms].

    For each output in append order: its append time minus the later of the previous
    output's append time and its own event time (stamped when the generator sent it). A gap
    in the input (the producer stalled) is not a pause of the stream; a stall of streamer
    is, and it includes the batch window and the scoring of the batch.
    """
    rows = sorted((o.appended_ms, o.record["event_time"]) for o in outputs)
    worst, when = 0, start_ms
    for (previous, _), (appended, sent) in itertools.pairwise(rows):
        if start_ms <= appended <= end_ms and appended - max(previous, sent) > worst:
            worst, when = appended - max(previous, sent), appended
    return worst, when


def input_times(bootstrap: str, topic: str, expected: int) -> list[int]:
    """When the producer sent each input (CreateTime, stamped by librdkafka at produce)."""
    return [m.timestamp()[1] for m in read_all(bootstrap, topic, expected)]
