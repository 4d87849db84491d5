"""What most teams write first, the idiomatic per-message consumer: per event, one
``poll``, a decode, one Redis ``MGET`` (the card's and the merchant's features), a one-row
ONNX Runtime run and a ``produce``, on plain confluent-kafka with the library's default
5 ms linger (``common.clients``).

Same model, same features code, same output records and wire format as streamer; only the
batching differs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import redis
from common import clients, parse_args, produce, stop_on_sigterm

from streamer.codec.columns import records_of
from streamer.codec.schemas import scored_schema, transaction_schema
from streamer.codec.wire import make_decoder, make_encoder
from streamer.features.cache import feature_status
from streamer.features.engineering import assemble, event_columns
from streamer.features.layout import card_key, merchant_key
from streamer.model.registry import load_model
from streamer.model.scorer import Scorer
from streamer.scoring.decisions import decide
from streamer.scoring.records import ModelStamp, scored_columns

MODELS = Path(__file__).resolve().parents[1] / "models"


def main() -> None:
    args = parse_args("--redis-url")
    stopped = stop_on_sigterm()
    model = load_model("fraud-gbt", MODELS)
    meta = model.metadata
    stamp = ModelStamp(meta.name, meta.version, meta.thresholds.review, meta.thresholds.decline)
    scorer = Scorer(model)
    decoder = make_decoder("single-object", reader_schema=transaction_schema())
    encoder = make_encoder("single-object", schema=scored_schema())
    cache = redis.Redis.from_url(args.redis_url)
    consumer, producer = clients(args)
    while not stopped():
        msg = consumer.poll(0.1)
        if msg is None or msg.error():
            continue
        received = time.time_ns() // 1_000_000
        event = decoder.decode(msg.value())
        if not isinstance(event, dict):
            continue
        card_blob, merchant_blob = cache.mget(
            card_key("", event["card_id"]), merchant_key("", event["merchant_id"])
        )
        card = model.card_defaults if card_blob is None else np.frombuffer(card_blob, "<f8")
        merchant = (
            model.merchant_defaults
            if merchant_blob is None
            else np.frombuffer(merchant_blob, "<f8")
        )
        row = assemble(event_columns([event]), card[None, :], merchant[None, :], meta.feature_names)
        scores = scorer.score(row)
        now = time.time_ns() // 1_000_000
        columns = scored_columns(
            [event],
            scores=scores,
            decisions=decide(scores, meta.thresholds.review, meta.thresholds.decline),
            statuses=feature_status(
                np.array([card_blob is not None]),
                np.array([merchant_blob is not None]),
                degraded=False,
            ),
            partitions=[msg.partition() or 0],
            offsets=[msg.offset() or 0],
            model=stamp,
            received_ms=received,
            scored_ms=now,
            publish_ms=now,
        )
        (record,) = records_of(columns, 1)  # per event, as a naive app would
        produce(producer, args.output, encoder.encode(record), event["card_id"])
        producer.poll(0)
    producer.flush(30)
    consumer.close()


if __name__ == "__main__":
    main()
