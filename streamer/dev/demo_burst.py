"""The demo's card-testing burst, and the table that shows the stream catching it live.

Twelve small online payments on one card at twelve merchants, three seconds apart: the
most common attack on card payments. Each payment on its own looks ordinary; only the
card's velocity state (how many payments, at how many merchants, how recently) gives the
burst away, so the table shows those inputs beside each score.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Producer
from rich.table import Table

from streamer.codec.schemas import transaction_schema
from streamer.codec.wire import make_encoder
from streamer.testing import sample_event

BURST = 12
CARD = "card-004321"  # a card of the synthetic population, quiet until the burst


def burst_events(now_ms: int, n: int = BURST) -> list[dict[str, Any]]:
    """``n`` small, authenticated e-commerce payments on ``CARD``, each at a new merchant,
    3 s apart: nothing about any one of them is unusual."""
    run = uuid.uuid4().hex[:8]
    return [
        sample_event(
            transaction_id=f"burst-{run}-{i:02d}",
            card_id=CARD,
            merchant_id=f"merchant-{(37 * i + 11) % 500:05d}",
            event_time=now_ms + 3_000 * i,
            amount_minor=900 + 53 * i,
            channel="ECOMMERCE",
            entry_mode="CREDENTIAL_ON_FILE",
            card_present=False,
            three_ds=True,
            device_id="device-7f3a",
        )
        for i in range(n)
    ]


def send_burst(bootstrap: str, topic: str, *, after_s: float, fmt: str = "single-object") -> None:
    """Send the burst (keyed by card) once ``after_s`` seconds have passed."""
    time.sleep(after_s)  # why: the burst lands in the middle of the steady traffic
    encoder = make_encoder(fmt, schema=transaction_schema())  # type: ignore[arg-type]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    now_ms = time.time_ns() // 1_000_000
    for event in burst_events(now_ms - 3_000 * BURST):  # stamped over the last half minute
        producer.produce(topic, encoder.encode(event), CARD)
    producer.flush(30)


def burst_table(samples: list[dict[str, Any]]) -> Table | None:
    """The burst's scored events in order, with the velocity inputs the stream logged."""
    rows = sorted((s for s in samples if s["card_id"] == CARD), key=lambda s: s["event_time"])
    if not rows:
        return None
    table = Table(title="a card-testing burst, scored live (velocity state)")
    for column in ("#", "amount", "txns last hour", "merchants 24 h", "s since last", "score"):
        table.add_column(column, justify="right")
    table.add_column("decision")
    for i, s in enumerate(rows, 1):
        features = s.get("features") or {}
        table.add_row(
            str(i),
            f"{s['amount_minor'] / 100:.2f} {s['currency']}",
            f"{features.get('txn_count_1h', float('nan')):.0f}",
            f"{features.get('distinct_merchants_24h', float('nan')):.0f}",
            f"{features.get('seconds_since_last_txn', float('nan')):.0f}",
            f"{s['score']:.4f}",
            s["decision"],
        )
    return table
