"""Micro-benchmark of the wire codecs: encode and decode µs/event for each framing.

Run: /work/venv/bin/python bench/codec.py [--events 20000] [--rounds 7]

Prints the median over rounds (and the best) of ``Encoder.encode_many`` and
``Decoder.decode_many`` on the same events, for the three framings, plus two references:
decoding events written with the v1 schema (Avro resolution to the current reader) and
fastavro's plain ``schemaless_reader`` with logical types left on (datetime conversion).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from functools import partial
from io import BytesIO
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import schemaless_reader

from streamer import avro, wire

CHANNELS = ["POS", "ECOMMERCE", "ATM", "MOTO", "RECURRING", "UNKNOWN"]
ENTRY_MODES = ["CHIP", "CONTACTLESS", "MAGSTRIPE", "MANUAL", "CREDENTIAL_ON_FILE", "UNKNOWN"]


def sample_events(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Plausible TransactionEvents built by hand (half e-commerce with device and IP)."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        online = rng.random() < 0.5
        events.append(
            {
                "transaction_id": f"{rng.getrandbits(128):032x}",
                "card_id": f"card_{rng.randrange(1_000_000):07d}",
                "merchant_id": f"m_{rng.randrange(50_000):06d}",
                "event_time": 1_760_000_000_000 + i * 37,
                "amount_minor": rng.randrange(100, 500_000),
                "currency": rng.choice(["EUR", "USD", "GBP"]),
                "mcc": rng.choice([5411, 5812, 5999, 7995, 4829]),
                "merchant_country": rng.choice(["DE", "FR", "US", "GB", "NL"]),
                "channel": "ECOMMERCE" if online else rng.choice(CHANNELS),
                "entry_mode": rng.choice(ENTRY_MODES),
                "card_present": not online,
                "three_ds": rng.choice([None, True, False]) if online else None,
                "terminal_id": None if online else f"T{rng.randrange(10**6):06d}",
                "acquirer_id": f"{rng.randrange(400_000, 499_999)}",
                "device_id": f"dev-{rng.getrandbits(64):016x}" if online else None,
                "ip_address": f"203.0.113.{rng.randrange(256)}" if online else None,
                "billing_country": rng.choice(["DE", "FR", "US", None]),
                "is_recurring": rng.random() < 0.05,
            }
        )
    return events


def timed(fn: Callable[[], object], n: int, rounds: int) -> tuple[float, float]:
    """Median and best µs per event over ``rounds`` runs of ``fn`` handling ``n`` events."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples), min(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    n, rounds = args.events, args.rounds

    schema = avro.transaction_schema()
    registry = SchemaRegistryClient.new_client({"url": "mock://bench"})
    events = sample_events(n)
    print(f"{n} events, {rounds} rounds; µs/event as median (best)")
    print(f"{'case':38s} {'encode':>16s} {'decode':>16s} {'bytes/event':>12s}")

    def row(
        name: str, enc: tuple[float, float] | None, dec: tuple[float, float], size: float
    ) -> None:
        e = f"{enc[0]:7.2f} ({enc[1]:5.2f})" if enc else f"{'-':>15s}"
        print(f"{name:38s} {e:>16s} {dec[0]:7.2f} ({dec[1]:5.2f}) {size:12.1f}")

    for fmt in ("raw", "single-object", "confluent"):
        encoder = wire.make_encoder(fmt, schema=schema, registry=registry, subject="tx-value")
        decoder = wire.make_decoder(fmt, reader_schema=schema, registry=registry)
        payloads = encoder.encode_many(events)
        assert decoder.decode_many(payloads) == events  # the numbers are for correct work
        enc = timed(partial(encoder.encode_many, events), n, rounds)
        dec = timed(partial(decoder.decode_many, payloads), n, rounds)
        row(fmt, enc, dec, sum(map(len, payloads)) / n)

    v1 = avro.load_schema("history/transaction_event.v1")
    v1_fields = {f["name"] for f in v1["fields"]}
    old = [{k: v for k, v in e.items() if k in v1_fields} | {"channel": "POS"} for e in events]
    old_payloads = wire.make_encoder("raw", schema=v1).encode_many(old)
    resolving = wire.make_decoder("raw", reader_schema=schema, writer_schema=v1)
    dec = timed(partial(resolving.decode_many, old_payloads), n, rounds)
    row("raw, v1 writer -> current reader", None, dec, sum(map(len, old_payloads)) / n)

    raw_payloads = wire.make_encoder("raw", schema=schema).encode_many(events)
    dec = timed(lambda: [schemaless_reader(BytesIO(p), schema) for p in raw_payloads], n, rounds)
    row("reference: fastavro, datetime on", None, dec, sum(map(len, raw_payloads)) / n)


if __name__ == "__main__":
    main()
