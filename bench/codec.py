"""Micro-benchmark of the wire codecs: encode and decode µs/event for each framing.

Run: /work/venv/bin/python bench/codec.py [--events 20000] [--rounds 7]

Prints the median over rounds (and the best) of ``Encoder.encode_many`` and
``Decoder.decode_many`` on the same events, for the three framings, plus references:
events written with the v1 schema (Avro resolution to the current reader), and fastavro's
bare ``schemaless_reader`` with logical types stripped (ints, as we decode) and kept
(``event_time`` converted to a ``datetime``).
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

from streamer.codec import schemas as avro
from streamer.codec import wire

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


Case = tuple[str, str, Callable[[], object], float]  # row, column, work, bytes per event


def build_cases(n: int) -> list[Case]:
    """Every measured (row, column) with its work; checks that the work is correct."""
    schema = avro.transaction_schema()
    registry = SchemaRegistryClient.new_client({"url": "mock://bench"})
    events = sample_events(n)
    cases: list[Case] = []
    for fmt in ("raw", "single-object", "confluent"):
        encoder = wire.make_encoder(fmt, schema=schema, registry=registry, subject="tx-value")
        decoder = wire.make_decoder(fmt, reader_schema=schema, registry=registry)
        payloads = encoder.encode_many(events)
        assert decoder.decode_many(payloads) == events  # the numbers are for correct work
        size = sum(map(len, payloads)) / n
        cases.append((fmt, "encode", partial(encoder.encode_many, events), size))
        cases.append((fmt, "decode", partial(decoder.decode_many, payloads), size))

    v1 = avro.load_schema("history/transaction_event.v1")
    v1_fields = {f["name"] for f in v1["fields"]}
    old = [{k: v for k, v in e.items() if k in v1_fields} | {"channel": "POS"} for e in events]
    old_payloads = wire.make_encoder("raw", schema=v1).encode_many(old)
    resolving = wire.make_decoder("raw", reader_schema=schema, writer_schema=v1)
    size = sum(map(len, old_payloads)) / n
    cases.append(
        (
            "raw, v1 writer -> current reader",
            "decode",
            partial(resolving.decode_many, old_payloads),
            size,
        )
    )

    # References without our wrapper: what the framing and checks cost, what datetimes cost.
    raw = wire.make_encoder("raw", schema=schema).encode_many(events)
    plain = avro.without_logical_types(schema)
    size = sum(map(len, raw)) / n
    cases.append(
        (
            "fastavro alone, ints",
            "decode",
            lambda: [schemaless_reader(BytesIO(p), plain) for p in raw],
            size,
        )
    )
    cases.append(
        (
            "fastavro alone, datetimes",
            "decode",
            lambda: [schemaless_reader(BytesIO(p), schema) for p in raw],
            size,
        )
    )
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    n, rounds = args.events, args.rounds
    cases = build_cases(n)
    samples: dict[tuple[str, str], list[float]] = {(r, c): [] for r, c, _, _ in cases}
    rng = random.Random(1)
    for _ in range(rounds):
        # Interleaved in random order: this VM's speed drifts, and drift must hit all cases.
        for row, column, work, _ in rng.sample(cases, len(cases)):
            start = time.perf_counter()
            work()
            samples[row, column].append((time.perf_counter() - start) / n * 1e6)

    print(f"{n} events, {rounds} interleaved rounds; µs/event as median (best)")
    print(f"{'case':34s} {'encode':>16s} {'decode':>16s} {'bytes/event':>12s}")
    for row in dict.fromkeys(r for r, _, _, _ in cases):
        cells = []
        for column in ("encode", "decode"):
            s = samples.get((row, column))
            cells.append(f"{statistics.median(s):7.2f} ({min(s):5.2f})" if s else "-")
        size = next(b for r, _, _, b in cases if r == row)
        print(f"{row:34s} {cells[0]:>16s} {cells[1]:>16s} {size:12.1f}")


if __name__ == "__main__":
    main()
