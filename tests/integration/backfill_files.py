"""Input files for ``score-file`` tests, written the way other tools write them.

The Avro files are written by plain fastavro with the schema files themselves (logical
types included, so ``event_time`` is given as a ``datetime``), not by streamer's codec.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import redis

from streamer.dev.synth import generate_events, make_population
from tests.integration.streamer_proc import load_synthetic_features

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = {
    "current": REPO / "schemas" / "transaction_event.avsc",
    "v1": REPO / "schemas" / "history" / "transaction_event.v1.avsc",
}
START_MS = 1_764_000_000_000


def synthetic_events(count: int, *, seed: int = 21) -> list[dict[str, Any]]:
    """Events of the population ``streamer features load --synthetic --cards 3000`` writes."""
    return generate_events(make_population(7, 3000, 300), count, seed=seed, start_ms=START_MS)


def as_written(event: dict[str, Any], schema: str = "current") -> dict[str, Any]:
    """``event`` as a writer with that schema holds it: timestamps as datetimes, its fields."""
    fields = {f["name"]: f["type"] for f in json.loads(SCHEMAS[schema].read_text())["fields"]}
    record = {name: event[name] for name in fields}
    symbols = fields["channel"].get("symbols", []) if isinstance(fields["channel"], dict) else []
    if symbols and record["channel"] not in symbols:  # an older writer had fewer channels
        record["channel"] = "ECOMMERCE"
    record["event_time"] = datetime.fromtimestamp(event["event_time"] / 1000, tz=UTC)
    return record


def write_avro(
    path: Path,
    events: list[dict[str, Any]],
    *,
    schema: str = "current",
    sync_interval: int = 16_000,
) -> Path:
    """An Avro container file of ``events`` written with ``schemas/``'s own schema file."""
    parsed = fastavro.parse_schema(json.loads(SCHEMAS[schema].read_text()))
    with path.open("wb") as out:
        fastavro.writer(
            out, parsed, [as_written(e, schema) for e in events], sync_interval=sync_interval
        )
    return path


def write_events(path: Path, count: int, *, seed: int = 21) -> Path:
    return write_avro(path, synthetic_events(count, seed=seed))


@contextmanager
def synthetic_snapshot(redis_url: str) -> Iterator[dict[str, str]]:
    """Settings (as environment variables) that point an offline command at Redis with the
    synthetic features loaded under a key prefix of its own, removed afterwards."""
    prefix = f"t-{uuid.uuid4().hex[:10]}:"
    load_synthetic_features(redis_url, prefix)
    yield {
        "STREAMER_REDIS_URL": redis_url,
        "STREAMER_REDIS_KEY_PREFIX": prefix,
        "STREAMER_MODELS_DIR": str(REPO / "models"),
    }
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
