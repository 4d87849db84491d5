"""What most teams write first: per event, a Redis GET per entity and an ONNX Runtime run.

Same model, same features code and same wire format as streamer; only the batching differs.
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

import numpy as np
import redis
from confluent_kafka import Consumer, Producer

from streamer.avro import scored_schema, transaction_schema
from streamer.features import assemble, card_key, event_columns, merchant_key
from streamer.registry import load_model
from streamer.scoring import DECISIONS, Scorer
from streamer.wire import make_decoder, make_encoder


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--bootstrap", "--input", "--output", "--group", "--redis-url"):
        parser.add_argument(name, required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--models-dir", default=str(Path(__file__).resolve().parents[1] / "models"))
    args = parser.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    model = load_model("fraud-gbt", Path(args.models_dir))
    meta = model.metadata
    scorer = Scorer(model)
    decoder = make_decoder("single-object", reader_schema=transaction_schema())
    encoder = make_encoder("single-object", schema=scored_schema())
    cache = redis.Redis.from_url(args.redis_url)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "linger.ms": 5,
            "compression.type": "lz4",
            "enable.idempotence": True,
        }
    )
    consumer.subscribe([args.input])
    while not stop:
        msg = consumer.poll(0.1)
        if msg is None or msg.error():
            continue
        received = time.time_ns() // 1_000_000
        event = decoder.decode(msg.value())
        if not isinstance(event, dict):
            continue
        card_blob = cache.get(card_key(args.prefix, event["card_id"]))
        merchant_blob = cache.get(merchant_key(args.prefix, event["merchant_id"]))
        card = model.card_defaults if card_blob is None else np.frombuffer(card_blob, "<f8")
        merchant = (
            model.merchant_defaults
            if merchant_blob is None
            else np.frombuffer(merchant_blob, "<f8")
        )
        row = assemble(event_columns([event]), card[None, :], merchant[None, :], meta.feature_names)
        score = float(scorer.score(row)[0])
        decision = 2 if score >= meta.thresholds.decline else int(score >= meta.thresholds.review)
        now = time.time_ns() // 1_000_000
        record = {
            "transaction_id": event["transaction_id"],
            "card_id": event["card_id"],
            "merchant_id": event["merchant_id"],
            "amount_minor": event["amount_minor"],
            "currency": event["currency"],
            "score": score,
            "decision": DECISIONS[decision],
            "review_threshold": meta.thresholds.review,
            "decline_threshold": meta.thresholds.decline,
            "model_name": meta.name,
            "model_version": meta.version,
            "feature_status": "COMPLETE" if card_blob and merchant_blob else "PARTIAL",
            "event_time": event["event_time"],
            "received_time": received,
            "scored_time": now,
            "publish_time": now,
            "processing_latency_ms": float(now - received),
            "source_partition": msg.partition(),
            "source_offset": msg.offset(),
        }
        while True:
            try:
                producer.produce(args.output, encoder.encode(record), event["card_id"])
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(30)
    consumer.close()


if __name__ == "__main__":
    main()
