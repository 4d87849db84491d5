"""``streamer dlq inspect`` and ``streamer dlq replay`` on dead letters written by a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from confluent_kafka import Producer

from tests.integration.conftest import Bed
from tests.integration.streamer_proc import (
    read_all,
    start_streamer,
    stop,
    streamer_env,
    wait_caught_up,
)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        env=streamer_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_inspect_counts_reasons_and_replay_sends_originals_back(bed: Bed) -> None:
    inp, out, dlq = (
        bed.make_topic("single-in", partitions=1),
        bed.make_topic("single-out"),
        bed.make_topic("single-in.dlq", partitions=1),
    )
    replayed = bed.make_topic("replayed", partitions=1)
    producer = Producer({"bootstrap.servers": bed.kafka})
    poison = [
        (b"k-empty-1", b""),
        (b"k-garbage", b"\x01\x02"),
        (b"k-empty-2", b""),
        (b"k-tomb", None),
    ]
    for key, value in poison:
        producer.produce(inp, value, key, headers=[("origin", key)])
    producer.flush(10)
    proc = start_streamer(
        bed.tmp / "s.log",
        kafka_bootstrap_servers=bed.kafka,
        redis_url=bed.redis_url,
        input_topic=inp,
        output_topic=out,
        dlq_topic=dlq,
        group_id=bed.group,
        input_format="single-object",
        metrics_port="0",
    )
    try:
        wait_caught_up(bed.kafka, bed.group, inp, 60, proc)
    finally:
        assert stop(proc) == 0

    listed = [
        json.loads(line)
        for line in _cli("dlq", "inspect", "-t", dlq, "-b", bed.kafka, "--json").stdout.splitlines()
    ]
    assert Counter(d["error_class"] for d in listed) == {
        "EmptyMessage": 2,
        "BadMagicByte": 1,
        "Tombstone": 1,
    }
    assert [d["original_offset"] for d in listed] == [0, 1, 2, 3]
    assert all(d["stage"] == "decode" and d["original_topic"] == inp for d in listed)
    table = _cli("dlq", "inspect", "-t", dlq, "-b", bed.kafka).stdout
    assert "EmptyMessage" in table
    assert "dead letters by reason" in table

    _cli(
        "dlq",
        "replay",
        "-t",
        dlq,
        "-b",
        bed.kafka,
        "--to",
        replayed,
        "--error-class",
        "EmptyMessage",
    )
    _cli(
        "dlq",
        "replay",
        "-t",
        dlq,
        "-b",
        bed.kafka,
        "--to",
        replayed,
        "--from-offset",
        "3",
        "--to-offset",
        "3",
    )

    back = read_all(bed.kafka, replayed, 3)
    assert [(m.key(), m.value()) for m in back] == [
        (b"k-empty-1", b""),
        (b"k-empty-2", b""),
        (b"k-tomb", None),
    ]
    for m in back:
        headers = dict(m.headers())
        assert headers["origin"] == m.key()
        assert headers["streamer.replayed"].startswith(dlq.encode())
        assert not any(
            h.startswith("streamer.error") or h.startswith("streamer.original") for h in headers
        )
