"""Micro-benchmark of the wire codecs: encode and decode µs/event, before and after.

Run: PYTHONPATH=. .venv/bin/python bench/codec.py [--events 20000] [--rounds 9]

"before" is the fastavro path the codecs had until the generated ones replaced it (a
``BytesIO`` per payload, ``schemaless_reader`` with the parsed writer and reader schemas,
``schemaless_writer`` after the header), kept here as ``FastavroCodec``; "after" is
``Encoder.encode_many`` / ``Decoder.decode_many`` as shipped. Rows: our TransactionEvent
in the three framings, the ScoredEvent we publish (what the stream encodes), events
written with the v1 schema (Avro resolution), and references: the generated function
alone (without framing and checks) and fastavro with ``event_time`` as a ``datetime``.
Times are CPU seconds of this process (``time.process_time``), so other load on a shared
machine slows the cases less than wall time would; the rounds interleave all cases in
random order and the table shows the median (and the best) over rounds.
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
from fastavro import schemaless_reader, schemaless_writer

from streamer.codec import codegen, wire
from streamer.codec import schemas as avro

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


def sample_scored(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ScoredEvents of ``events``, as ``scoring/records.py`` builds them per batch."""
    rng = random.Random(11)
    batch_ms = events[0]["event_time"] + 40
    return [
        {
            **{k: e[k] for k in ("transaction_id", "card_id", "merchant_id", "amount_minor")},
            "currency": e["currency"],
            "score": rng.random(),
            "decision": rng.choice(["APPROVE", "REVIEW", "DECLINE"]),
            "review_threshold": 0.5,
            "decline_threshold": 0.9,
            "model_name": "fraud-gbt",
            "model_version": "1",
            "feature_status": rng.choice(["COMPLETE", "PARTIAL", "DEFAULTED"]),
            "event_time": e["event_time"],
            "received_time": batch_ms + i // 500 * 20,
            "scored_time": batch_ms + i // 500 * 20 + 3,
            "publish_time": batch_ms + i // 500 * 20 + 4,
            "processing_latency_ms": 4.0,
            "source_partition": i % 12,
            "source_offset": 1_000_000 + i,
            "shadow_score": None,
            "shadow_decision": None,
            "shadow_model_version": None,
        }
        for i, e in enumerate(events)
    ]


class FastavroCodec:
    """The codec as it was before the generated one: fastavro on a ``BytesIO`` per payload."""

    def __init__(self, writer: avro.Schema, reader: avro.Schema, header: bytes = b"") -> None:
        self.writer = avro.without_logical_types(writer)
        same = avro.fingerprint(writer) == avro.fingerprint(reader)
        self.reader = None if same else avro.without_logical_types(reader)
        self.header = header

    def decode_many(self, payloads: list[bytes]) -> list[Any]:
        start, out = len(self.header), []
        for payload in payloads:
            fo = BytesIO(payload)
            fo.seek(start)
            record = schemaless_reader(fo, self.writer, self.reader)
            if fo.tell() != len(payload):
                raise ValueError("trailing bytes")
            out.append(record)
        return out

    def encode_many(self, records: list[dict[str, Any]]) -> list[bytes]:
        out = []
        for record in records:
            fo = BytesIO()
            fo.write(self.header)
            schemaless_writer(fo, self.writer, record)
            out.append(fo.getvalue())
        return out


Case = tuple[str, str, Callable[[], object], float]  # row, column, work, bytes per event


def _pair(row: str, encoder: Any, decoder: Any, records: list[dict[str, Any]]) -> list[Case]:
    """Encode and decode cases for one codec; checks first that the work is correct."""
    payloads = encoder.encode_many(records)
    assert decoder.decode_many(payloads) == records  # the numbers are for correct work
    size = sum(map(len, payloads)) / len(records)
    return [
        (row, "encode", partial(encoder.encode_many, records), size),
        (row, "decode", partial(decoder.decode_many, payloads), size),
    ]


def build_cases(n: int) -> list[Case]:
    """Every measured (row, column) with its work; checks that the work is correct."""
    schema, scored = avro.transaction_schema(), avro.scored_schema()
    registry = SchemaRegistryClient.new_client({"url": "mock://bench"})
    events = sample_events(n)
    cases = _pair(
        "TransactionEvent raw, before",
        FastavroCodec(schema, schema),
        FastavroCodec(schema, schema),
        events,
    )
    for fmt in ("raw", "single-object", "confluent"):
        encoder = wire.make_encoder(fmt, schema=schema, registry=registry, subject="tx-value")
        decoder = wire.make_decoder(fmt, reader_schema=schema, registry=registry)
        cases += _pair(f"TransactionEvent {fmt}, after", encoder, decoder, events)
    scored_events = sample_scored(events)
    before = FastavroCodec(scored, scored)
    cases += _pair("ScoredEvent raw, before", before, before, scored_events)
    encoder = wire.make_encoder("raw", schema=scored)
    decoder = wire.make_decoder("raw", reader_schema=scored)
    cases += _pair("ScoredEvent raw, after", encoder, decoder, scored_events)

    v1 = avro.load_schema("history/transaction_event.v1")
    v1_fields = {f["name"] for f in v1["fields"]}
    old = [{k: v for k, v in e.items() if k in v1_fields} | {"channel": "POS"} for e in events]
    old_payloads = wire.make_encoder("raw", schema=v1).encode_many(old)
    size = sum(map(len, old_payloads)) / n
    expected = wire.make_decoder("raw", reader_schema=schema, writer_schema=v1).decode_many(
        old_payloads
    )
    for row, resolving in (
        ("v1 writer -> current, before", FastavroCodec(v1, schema)),
        (
            "v1 writer -> current, after",
            wire.make_decoder("raw", reader_schema=schema, writer_schema=v1),
        ),
    ):
        assert resolving.decode_many(old_payloads) == expected
        cases.append((row, "decode", partial(resolving.decode_many, old_payloads), size))

    # References: the generated function without framing and checks; what datetimes cost.
    raw = wire.make_encoder("raw", schema=schema).encode_many(events)
    plain = avro.without_logical_types(schema)
    read = codegen.reader_for(plain, plain)
    size = sum(map(len, raw)) / n
    cases.append(("generated function alone", "decode", lambda: [read(p, 0)[0] for p in raw], size))
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
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    n, rounds = args.events, args.rounds
    cases = build_cases(n)
    samples: dict[tuple[str, str], list[float]] = {(r, c): [] for r, c, _, _ in cases}
    rng = random.Random(1)
    for _ in range(rounds):
        # Interleaved in random order: this VM's speed drifts, and drift must hit all cases.
        for row, column, work, _ in rng.sample(cases, len(cases)):
            start = time.process_time()
            work()
            samples[row, column].append((time.process_time() - start) / n * 1e6)

    print(f"{n} events, {rounds} interleaved rounds; CPU µs/event as median (best)")
    print(f"{'case':38s} {'encode':>16s} {'decode':>16s} {'bytes/event':>12s}")
    for row in dict.fromkeys(r for r, _, _, _ in cases):
        cells = []
        for column in ("encode", "decode"):
            s = samples.get((row, column))
            cells.append(f"{statistics.median(s):7.2f} ({min(s):5.2f})" if s else "-")
        size = next(b for r, _, _, b in cases if r == row)
        print(f"{row:38s} {cells[0]:>16s} {cells[1]:>16s} {size:12.1f}")


if __name__ == "__main__":
    main()
