"""Exactly-once transactions that span micro-batches, on the real broker.

kill -9 while a transaction of several batches is open (its outputs appended, not
committed), or a successor taking over while it is frozen there (it wakes as a fenced
zombie): a read_committed reader sees every input scored once, none lost. An idle
stream: its last outputs become visible by the time bound alone, with no more input, no
stop and a count bound it cannot reach. The crash of a stream committing by the default
bounds is ``test_pipeline_e2e.test_exactly_once_survives_a_crash_…``.
"""

from __future__ import annotations

import signal
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streamer.codec.schemas import transaction_schema
from streamer.codec.wire import make_encoder
from tests.integration.conftest import Bed
from tests.integration.faults import Stream, has_logged, lost_and_duplicates, outputs
from tests.integration.streamer_proc import (
    committed_total,
    load_synthetic_features,
    start_streamer,
    stop,
    wait_caught_up,
    wait_until,
)
from tests.unit.fakes import make_event

BATCH = 20


def exactly_once(bed: Bed, max_ms: int, **more: str) -> dict[str, str]:
    """Settings of an exactly-once stream whose transactions commit by time alone (the
    count bound out of reach), with the features loaded."""
    load_synthetic_features(bed.redis_url, bed.prefix)
    return {
        **bed.settings,
        "processing_guarantee": "exactly-once",
        "transactional_id": f"tx-{bed.group}",
        "transaction_max_ms": str(max_ms),
        "transaction_max_batches": "100000",
        **more,
    }


def appended(bootstrap: str, topic: str) -> int:
    """Records appended to ``topic``, committed or not (read_uncommitted, to the end)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"appended-{time.monotonic_ns()}",
            "isolation.level": "read_uncommitted",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}  # fmt: skip
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        count, deadline = 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            positions = consumer.position([TopicPartition(topic, p) for p in parts])
            if all(tp.offset >= ends[tp.partition] for tp in positions if ends[tp.partition]):
                return count
            count += sum(1 for m in consumer.consume(1000, 0.2) if not m.error())
        raise AssertionError(f"{topic}: could not read to its end in 30 s")
    finally:
        consumer.close()


@pytest.mark.faults
@pytest.mark.parametrize("fault", ["kill -9", "zombie"])
def test_a_multi_batch_transaction_cut_short_loses_nothing_and_duplicates_nothing(
    bed: Bed, fault: str
) -> None:
    """Commits by time only (1 s); small batches, so an open transaction spans several. The
    process is frozen (SIGSTOP) to check that one is open, with more than two batches'
    outputs on the broker. Then either it is killed in that state and restarted, or a
    successor with its identity (transactional id, group instance id) takes over while it
    is frozen, and it wakes as a zombie in the middle of its transaction: fenced, it must
    stop without committing anything."""
    settings = exactly_once(bed, max_ms=1000, max_batch_size=str(BATCH))
    kafka_bootstrap, group, tmp_path = bed.kafka, bed.group, bed.tmp
    topic, out = bed.topics["input_topic"], bed.topics["output_topic"]
    stream = Stream(kafka_bootstrap, topic, seconds=60).start()
    first = start_streamer(tmp_path / "first.log", **settings)
    frozen_at = 0

    def open_transaction_of_several_batches() -> bool:
        nonlocal frozen_at
        first.send_signal(signal.SIGSTOP)  # nothing commits or appends while we look
        frozen_at = committed_total(kafka_bootstrap, group, topic)
        uncommitted = appended(kafka_bootstrap, out) - frozen_at
        if frozen_at > 0 and uncommitted > 2 * BATCH:
            return True
        first.send_signal(signal.SIGCONT)
        return False

    try:
        wait_until(open_transaction_of_several_batches, 90, "an open multi-batch transaction")
        if fault == "kill -9":
            first.kill()  # still stopped: the open transaction is never committed
        second = start_streamer(tmp_path / "second.log", **settings)
        if fault == "zombie":
            wait_until(
                lambda: committed_total(kafka_bootstrap, group, topic) > frozen_at,
                90,
                "the successor's first commit",
                second,
            )
            first.send_signal(signal.SIGCONT)
            assert first.wait(60) != 0, "a fenced zombie must stop with an error"
            log = (tmp_path / "first.log").read_text()
            assert "exactly-once stopped" in log, log[-3000:]
    finally:
        first.kill()
        first.wait(30)
    stream.finish_in(3)
    try:
        stream.join()
        wait_caught_up(kafka_bootstrap, group, topic, 120, second)
    finally:
        assert stop(second) == 0, (tmp_path / "second.log").read_text()[-3000:]
    scored = outputs(kafka_bootstrap, out, len(stream.sent))  # read_committed
    lost, duplicates = lost_and_duplicates(stream.sent, scored)
    print(f"{fault} mid-transaction: {len(stream.sent)} sent, {lost} lost, {duplicates} dup")
    assert (lost, duplicates) == (0, 0)


def test_an_idle_streams_last_outputs_become_visible_by_the_time_bound(bed: Bed) -> None:
    settings, kafka_bootstrap = exactly_once(bed, max_ms=300), bed.kafka
    log = bed.tmp / "streamer.log"
    proc = start_streamer(log, **settings)
    try:
        wait_until(lambda: has_logged(log, "assigned "), 90, "partitions assigned", proc)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        encoder = make_encoder("single-object", schema=transaction_schema())
        sent = {f"idle-{i}" for i in range(20)}
        for tx in sorted(sent):
            event = make_event(0, transaction_id=tx, card_id=f"card-{tx}")
            producer.produce(bed.topics["input_topic"], encoder.encode(event), tx)
        producer.flush(30)
        started = time.monotonic()
        # read_committed: only a commit makes them visible, and only the time bound can
        # commit here (the count bound is out of reach, the process keeps running).
        seen = outputs(kafka_bootstrap, bed.topics["output_topic"], len(sent))
        visible_s = time.monotonic() - started
        assert proc.poll() is None, "the outputs must be visible while the stream runs"
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
    print(f"idle stream: the last of {len(sent)} outputs visible after {visible_s:.2f} s")
    assert sorted(o["transaction_id"] for o in seen) == sorted(sent)
