"""Any bytes a producer can put on the input topic: the stream survives and accounts for each.

One ``streamer run`` process takes every Hypothesis example in turn (arbitrary keys, values
up to 3 MB, header names and values as arbitrary bytes, thousands of headers, mixed with
valid events). After each example: the process is alive, every input offset became exactly
one scored event (valid events, by transaction id) or one dead letter holding the
original (or a cut-down copy that says so), and the group's committed offsets reached the
end. Explicit cases pin the limits: an oversized value, a dead-letter topic with a small
``max.message.bytes``, one that refuses everything (exit 4), ids of 400 KB.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.codec.schemas import transaction_schema
from streamer.codec.wire import make_encoder
from streamer.dev.synth import generate_events, make_population
from tests.integration.hostile import Outcomes, Record, Sender, kcat_available, same_original
from tests.integration.streamer_proc import (
    load_synthetic_features,
    start_streamer,
    stop,
    wait_caught_up,
)

BIG_INPUT_TOPIC = {"max.message.bytes": "4000000"}
_ENCODER = make_encoder("single-object", schema=transaction_schema())
_EVENTS = generate_events(make_population(7, 3000, 300), 2000, seed=11, start_ms=0)
_counter = iter(range(10**9))


def valid_event(**overrides: object) -> tuple[str, bytes]:
    """A fresh valid event (unique transaction id, event time now) and its bytes."""
    n = next(_counter)
    event = {
        **_EVENTS[n % len(_EVENTS)],
        "transaction_id": f"hostile-{time.monotonic_ns()}-{n}",
        "event_time": time.time_ns() // 1_000_000,
        **overrides,
    }
    return event["transaction_id"], _ENCODER.encode(event)


_names = st.binary(min_size=0, max_size=24)
_headers = st.lists(st.tuples(_names, st.binary(max_size=200)), max_size=6)
_sizes = st.one_of(
    st.integers(0, 3000), st.sampled_from([999_999, 1_000_001, 1_500_000, 3_000_000])
)


@st.composite
def records(draw: st.DrawFn) -> Record:
    headers = draw(_headers)
    many = draw(st.sampled_from([0, 0, 0, 0, 3000]))
    headers += [(f"h{i}".encode(), b"v" * (i % 7)) for i in range(many)]
    key = draw(st.one_of(st.none(), st.binary(max_size=300)))
    if draw(st.booleans()):
        transaction_id, value = valid_event()
        return Record(key, value, headers, transaction_id)
    size = draw(_sizes)
    value = random.Random(draw(st.integers(0, 2**32))).randbytes(size)
    return Record(key, value if draw(st.integers(0, 9)) else None, headers)


@pytest.fixture
def hostile_run(
    make_topic: Callable[..., str],
    run_settings: dict[str, str],
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> Iterator[tuple[dict[str, str], subprocess.Popen[bytes], Path]]:
    """``streamer run`` on an input topic that accepts 4 MB messages."""
    kcat_available()
    load_synthetic_features(redis_url, redis_prefix)
    settings_ = {**run_settings, "input_topic": make_topic("big", 3, BIG_INPUT_TOPIC)}
    log = tmp_path / "streamer.log"
    proc = start_streamer(log, **settings_)
    yield settings_, proc, log
    assert stop(proc) == 0, log.read_text()[-3000:]


def check_accounting(sender: Sender, outcomes: Outcomes) -> None:
    """Exactly one outcome per input offset, the right kind, holding the original."""
    for position, record in sender.sent.items():
        scored, dead = outcomes.scored.get(position, []), outcomes.dead.get(position, [])
        assert len(scored) + len(dead) == 1, f"{position}: {len(scored)} scored, {len(dead)} dead"
        if record.transaction_id:
            assert scored == [record.transaction_id], f"{position} valid event not scored once"
        else:
            assert dead, f"{position}: junk was scored"
            assert same_original(dead[0], record), f"{position}: dead letter lost the original"
    assert outcomes.accounted() == set(sender.sent), "outputs for inputs never sent"


def test_any_bytes_on_the_input_topic_are_scored_or_dead_lettered_exactly_once(
    hostile_run: tuple[dict[str, str], subprocess.Popen[bytes], Path], kafka_bootstrap: str
) -> None:
    run, proc, log = hostile_run
    sender = Sender(kafka_bootstrap, run["input_topic"], 3)
    outcomes = Outcomes(kafka_bootstrap, run["output_topic"], run["dlq_topic"])

    @settings(
        max_examples=8,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(records(), min_size=1, max_size=12))
    def example(batch: list[Record]) -> None:
        for record in batch:
            sender.send(record)
        wait_caught_up(kafka_bootstrap, run["group_id"], run["input_topic"], 120, proc)
        outcomes.collect(set(sender.sent))
        assert proc.poll() is None, log.read_text()[-3000:]
        check_accounting(sender, outcomes)

    try:
        example()
    finally:
        outcomes.close()
    assert len(sender.sent) >= 20
    assert any(r.transaction_id for r in sender.sent.values())
    assert any(len(r.value or b"") > 1_000_000 for r in sender.sent.values())
    assert sender.kcat_sent, "no header name that is not UTF-8 was generated"
    assert any(len(r.headers) >= 3000 for r in sender.sent.values())
