"""Reason codes are the same wherever a decision goes: the stream's scored topic, the
``/v1/score`` answer and ``score-file``'s Avro and Parquet output, for the same events.

Each path is the real thing: ``streamer run`` on the broker, ``streamer serve`` as a
process, ``streamer score-file`` as a command, all on the same Redis snapshot. Velocity
state is off here (velocity parity across paths has its own tests), so every path scores
each event on the same inputs whatever its batching.
"""

from __future__ import annotations

import asyncio
from typing import Any

import fastavro
import httpx
import pyarrow.parquet as pq
from confluent_kafka import Producer

from streamer.codec.schemas import transaction_schema
from streamer.codec.wire import make_encoder
from tests.cli import streamer_cli
from tests.integration.backfill_files import synthetic_events, write_avro
from tests.integration.conftest import Bed
from tests.integration.serve_proc import serving
from tests.integration.streamer_proc import (
    decode_single_object,
    load_synthetic_features,
    plain_schema,
    read_all,
    start_streamer,
    stop,
    wait_caught_up,
)

N = 400


def _events() -> list[dict[str, Any]]:
    """Synthetic events of the loaded population; every tenth a large foreign payment
    keyed by hand (flagged), so every path has reasons to give."""
    events = synthetic_events(N, seed=33)
    for event in events[::10]:
        event.update(
            amount_minor=650_000,
            merchant_country="NG",
            channel="ECOMMERCE",
            entry_mode="MANUAL",
            card_present=False,
        )
    return events


def _stream(bed: Bed, events: list[dict[str, Any]]) -> dict[str, Any]:
    producer = Producer({"bootstrap.servers": bed.kafka})
    encoder = make_encoder("single-object", schema=transaction_schema())
    for event in events:
        producer.produce(bed.topics["input_topic"], encoder.encode(event), key=event["card_id"])
    assert producer.flush(30) == 0
    log = bed.tmp / "streamer.log"
    proc = start_streamer(log, **bed.settings, velocity_state="false")
    try:
        wait_caught_up(bed.kafka, bed.group, bed.topics["input_topic"], 180, proc)
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    schema = plain_schema("scored_event")
    out = read_all(bed.kafka, bed.topics["output_topic"], len(events))
    records = [decode_single_object(m.value(), schema) for m in out]
    return {r["transaction_id"]: r["reasons"] for r in records}


async def _post_all(url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:

        async def one(event: dict[str, Any]) -> tuple[str, Any]:
            async with limit:
                response = await client.post("/v1/score", json=event)
            assert response.status_code == 200, response.text
            return event["transaction_id"], response.json().get("reasons")

        return dict(await asyncio.gather(*(one(e) for e in events)))


def _score_file(bed: Bed, events: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    source = write_avro(bed.tmp / "events.avro", events)
    target = bed.tmp / f"scored{suffix}"
    env = {
        "STREAMER_REDIS_URL": bed.redis_url,
        "STREAMER_REDIS_KEY_PREFIX": bed.prefix,
        "STREAMER_VELOCITY_STATE": "false",
    }
    done = streamer_cli("score-file", str(source), str(target), env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    if suffix == ".parquet":
        rows = pq.read_table(target).to_pylist()
    else:
        with target.open("rb") as fin:
            rows = list(fastavro.reader(fin))  # type: ignore[arg-type]
    return {r["transaction_id"]: r["reasons"] for r in rows}


def test_reasons_are_identical_on_the_stream_the_api_and_score_file(bed: Bed) -> None:
    load_synthetic_features(bed.redis_url, bed.prefix)
    events = _events()
    settings = {"redis_url": bed.redis_url, "redis_key_prefix": bed.prefix}
    with serving(bed.tmp, **settings, velocity_state="false") as server:
        api = asyncio.run(_post_all(server.url, events))
    avro, parquet = _score_file(bed, events, ".avro"), _score_file(bed, events, ".parquet")
    stream = _stream(bed, events)

    flagged = [t for t, reasons in stream.items() if reasons]
    assert len(flagged) >= N // 10, "the large foreign payments are flagged"
    assert {t for t, reasons in stream.items() if reasons is None}, "approvals have none"
    for transaction_id, reasons in stream.items():
        assert api[transaction_id] == reasons, transaction_id
        assert avro[transaction_id] == reasons, transaction_id
        assert parquet[transaction_id] == reasons, transaction_id
    codes = {r["code"] for t in flagged for r in stream[t]}
    assert codes & {"HIGH_AMOUNT", "AMOUNT_SPIKE", "MERCHANT_AMOUNT", "FOREIGN_MERCHANT"}
