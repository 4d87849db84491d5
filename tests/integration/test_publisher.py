"""The stream's publisher against the real broker: each output arrives as it was handed
over (key, value, trace headers, a timestamp of now, the partitioner's partition), and the
broker's refusal of one reaches its delivery callback (its input is dead-lettered), while
the others are acknowledged by silence. The hot path passes ``Producer.produce`` its
arguments by position: a client that took them in another order fails here. And the trace
headers of consumed records, read in line for the usual shapes: a record whose header
names the client cannot decode has none (asking again must not crash), the others theirs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from confluent_kafka import Message, Producer

from streamer.kafka.delivery import now_ms
from streamer.kafka.headers import read_headers, read_headers_many
from streamer.kafka.offsets import OffsetTracker
from streamer.kafka.publisher import STREAM_PRODUCER, DeadLetterTopic, Publisher
from tests.integration.hostile import Record, kcat_send
from tests.integration.streamer_proc import read_all

TP = ("in", 0)
TRACE = frozenset({"traceparent", "tracestate"})


def test_outputs_arrive_as_handed_over_and_a_refused_one_is_dead_lettered(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    out = make_topic("out", partitions=3, config={"max.message.bytes": "2000"})
    dlq = make_topic("dlq", partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, **STREAM_PRODUCER})
    tracker = OffsetTracker()
    tracker.register(TP, range(4))
    publisher = Publisher(producer, tracker, dead_letters=DeadLetterTopic(dlq, "g"))
    keys = [f"card-{i}" for i in range(4)]
    values = [b"a" * 10, os.urandom(5000), b"c" * 10, b"d" * 10]  # the broker refuses [1]
    headers = [[("traceparent", f"00-{i:032x}-{i:016x}-01".encode())] for i in range(3)]
    inputs = [Message(topic="in", partition=0, offset=i, value=b"in-%d" % i) for i in range(4)]
    before = now_ms()

    publisher.send_many(
        out, keys, values, [(TP, i) for i in range(4)], [*headers, None], [before] * 4, inputs
    )
    deadline = time.monotonic() + 30
    while tracker.committable(TP) != 4 and time.monotonic() < deadline:
        publisher.flush(1.0)  # serves the refusal, then queues and settles its dead letter

    assert tracker.committable(TP) == 4
    assert (publisher.delivered, publisher.refused) == (4, 1)  # 3 outputs and 1 letter
    written = {m.key(): m for m in read_all(kafka_bootstrap, out, 3)}
    assert sorted(written) == [b"card-0", b"card-2", b"card-3"]
    for i in (0, 2, 3):
        msg = written[keys[i].encode()]
        assert msg.value() == values[i]
        assert msg.headers() == (headers[i] if i < 3 else None)
        assert msg.timestamp()[1] >= before  # 0 given: the time of producing
    partitions = {m.partition() for m in written.values()}
    assert partitions <= {0, 1, 2}
    (letter,) = read_all(kafka_bootstrap, dlq, 1)
    assert letter.value() == b"in-1"


def test_trace_headers_of_consumed_records_skip_the_unreadable_ones_and_keep_the_rest(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("in", partitions=1)
    traceparent = b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"
    sent = [
        [(b"\xff\xfename", b"v")],  # one header, its name not UTF-8: unreadable
        [(b"traceparent", traceparent)],  # the rule
        [(b"x-card", b"c"), (b"\xc3(", b"v"), (b"traceparent", traceparent)],  # unreadable
        [(b"tracestate", b"a=1"), (b"traceparent", traceparent)],
        [(b"x-card", b"c")],  # one header, not a trace header
        [],
    ]
    for i, headers in enumerate(sent):
        kcat_send(kafka_bootstrap, topic, 0, Record(b"k", b"v%d" % i, headers))
    messages = sorted(read_all(kafka_bootstrap, topic, len(sent)), key=Message.offset)
    wanted = [
        None,
        [("traceparent", traceparent)],
        None,
        [("tracestate", b"a=1"), ("traceparent", traceparent)],
        None,
        None,
    ]

    assert read_headers_many(messages, TRACE) == wanted
    assert read_headers_many(messages, TRACE) == wanted  # asked again: the same, no crash
    assert [read_headers(m) is None for m in messages] == [True, False, True, False, False, False]
