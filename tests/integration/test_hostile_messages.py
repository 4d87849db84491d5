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
from streamer.kafka.headers import read_headers
from tests.integration.hostile import Outcomes, Record, Sender, kcat_available, same_original
from tests.integration.streamer_proc import (
    committed_total,
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


def _letters(outcomes: Outcomes, position: tuple[int, int]) -> dict[str, bytes]:
    (letter,) = outcomes.dead[position]
    return dict(read_headers(letter) or [])


def test_oversized_value_and_huge_ids_are_dead_lettered_and_the_partition_moves_on(
    hostile_run: tuple[dict[str, str], subprocess.Popen[bytes], Path], kafka_bootstrap: str
) -> None:
    """Default limits: a 1.5 MB value is ``Oversized`` (cut down to fit), two 400 KB ids are
    ``IdTooLong`` (the whole original fits), and valid events behind them are scored."""
    run, proc, log = hostile_run
    sender = Sender(kafka_bootstrap, run["input_topic"], 1)  # all on partition 0, in order
    outcomes = Outcomes(kafka_bootstrap, run["output_topic"], run["dlq_topic"])
    huge = random.Random(1).randbytes(1_500_000)
    tx_long, long_ids = valid_event(card_id="c" * 400_000, merchant_id="m" * 400_000)
    after = [valid_event() for _ in range(3)]
    for record in [
        Record(b"big", huge, [(b"traceparent", b"00-x")]),
        Record(b"ids", long_ids, []),
        *(Record(b"ok", value, [], tx) for tx, value in after),
    ]:
        sender.send(record)
    wait_caught_up(kafka_bootstrap, run["group_id"], run["input_topic"], 90, proc)
    try:
        outcomes.collect(set(sender.sent))
    finally:
        outcomes.close()
    assert proc.poll() is None, log.read_text()[-3000:]
    check_accounting(sender, outcomes)
    oversized = _letters(outcomes, (0, 0))
    assert oversized["streamer.error.class"] == b"Oversized"
    assert oversized["streamer.truncated"] == b"true"
    assert oversized["streamer.original.size"] == b"1500000"
    (letter,) = outcomes.dead[(0, 0)]
    assert len(letter.value()) < 1_048_588  # the topic's default max.message.bytes
    ids = _letters(outcomes, (0, 1))
    assert ids["streamer.error.class"] == b"IdTooLong"
    assert "streamer.truncated" not in ids
    assert [outcomes.scored[(0, i)] for i in (2, 3, 4)] == [[tx] for tx, _ in after]
    assert tx_long not in {t for ts in outcomes.scored.values() for t in ts}


def test_a_small_dead_letter_topic_gets_cut_down_letters(
    make_topic: Callable[..., str],
    run_settings: dict[str, str],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    """``max.message.bytes=2048`` on the dead-letter topic: letters arrive cut to fit, and
    the valid events around them are scored."""
    dlq = make_topic("small.dlq", 1, {"max.message.bytes": "2048"})
    run = {**run_settings, "dlq_topic": dlq}
    proc = start_streamer(tmp_path / "streamer.log", **run)
    sender = Sender(kafka_bootstrap, run["input_topic"], 3)
    outcomes = Outcomes(kafka_bootstrap, run["output_topic"], dlq)
    rng = random.Random(2)
    try:
        for i in range(6):
            sender.send(Record(f"k{i}".encode(), rng.randbytes(10 ** (i % 3 + 2)), []))
            tx, value = valid_event()
            sender.send(Record(b"ok", value, [], tx))
        wait_caught_up(kafka_bootstrap, run["group_id"], run["input_topic"], 120, proc)
        outcomes.collect(set(sender.sent))
    finally:
        outcomes.close()
        assert stop(proc) == 0, (tmp_path / "streamer.log").read_text()[-3000:]
    check_accounting(sender, outcomes)
    letters = [m for ms in outcomes.dead.values() for m in ms]
    assert len(letters) == 6
    cut = [m for m in letters if dict(read_headers(m) or []).get("streamer.truncated")]
    assert len(cut) >= 2  # the 10 KB values; smaller ones may fit as they are
    assert all(len(m.value() or b"") + len(m.key() or b"") < 2048 for m in letters)


def test_a_dead_letter_topic_that_refuses_everything_stops_the_stream_with_exit_4(
    make_topic: Callable[..., str],
    run_settings: dict[str, str],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    """Not even a 1 KB letter fits: retried for STREAMER_DLQ_GIVE_UP_S (8 s here, 60 by
    default), then exit 4 with one line naming the topic (never a silent loop, never a
    skipped offset)."""
    dlq = make_topic("tiny.dlq", 1, {"max.message.bytes": "200"})
    run = {**run_settings, "dlq_topic": dlq, "log_level": "ERROR", "dlq_give_up_s": "8"}
    log = tmp_path / "streamer.log"
    proc = start_streamer(log, **run)
    Sender(kafka_bootstrap, run["input_topic"], 3).send(Record(b"k", b"not avro", []))
    started = time.monotonic()
    try:
        code = proc.wait(timeout=100)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - started
    print(f"dead-letter topic refusing everything: exit {code} after {took:.1f} s")
    assert code == 4, log.read_text()[-3000:]
    assert 8 <= took < 40
    (line,) = [ln for ln in log.read_text().splitlines() if ln.startswith("streamer:")]
    assert dlq in line
    assert "max.message.bytes" in line
    assert committed_total(kafka_bootstrap, run["group_id"], run["input_topic"]) == 0
