"""Batch scoring a backfill can trust: any writer, Avro or Parquet, nothing half-written.

Files are written by fastavro and pyarrow directly (``backfill_files``), as other tools
would write them; ``streamer score-file`` runs as a subprocess against the real Redis of
the run, with the synthetic features loaded under a prefix of this module's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamer.errors import DependencyError
from tests.cli import streamer_cli
from tests.integration.backfill_files import (
    REPO,
    synthetic_events,
    synthetic_snapshot,
    write_avro,
)

N = 1200


@pytest.fixture(scope="module")
def features(redis_url: str) -> Iterator[dict[str, str]]:
    """Settings that point score-file at Redis with the synthetic features loaded."""
    with synthetic_snapshot(redis_url) as settings:
        yield settings


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    """Synthetic events with two invalid ones in the middle (bad currency, zero amount)."""
    base = synthetic_events(N)
    bad = [
        dict(base[0], transaction_id="bad-currency", currency="XXQ"),
        dict(base[1], transaction_id="bad-amount", amount_minor=0),
    ]
    return [*base[: N // 2], *bad, *base[N // 2 :]]


def _score(source: Path, target: Path, env: dict[str, str], *extra: str) -> Any:
    return streamer_cli("score-file", str(source), str(target), "--chunk", "500", *extra,
                        env=env, timeout=180)  # fmt: skip


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    with path.open("rb") as fin:
        return list(fastavro.reader(fin))  # type: ignore[arg-type]


def _rejects(path: Path) -> list[tuple[int, str]]:
    return [(r["row"], r["error_class"]) for r in map(json.loads, path.read_text().splitlines())]


def _left_behind(directory: Path, *inputs: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p not in inputs)


@pytest.mark.parametrize("schema", ["current", "v1"])
def test_avro_written_with_our_schema_files_is_scored(
    schema: str, events: list[dict[str, Any]], features: dict[str, str], tmp_path: Path
) -> None:
    """``event_time`` as a timestamp-millis datetime (the schema file itself) and v1 writers."""
    source = write_avro(tmp_path / "in.avro", events, schema=schema)
    result = _score(source, tmp_path / "out.avro", features)
    assert result.returncode == 0, result.stderr
    scored = _read(tmp_path / "out.avro")
    assert len(scored) == N
    by_id = {e["transaction_id"]: e for e in events}
    for record in scored[:50]:
        written = by_id[record["transaction_id"]]["event_time"]
        assert record["event_time"] == datetime.fromtimestamp(written / 1000, tz=UTC)
        assert record["decision"] in {"APPROVE", "REVIEW", "DECLINE"}
        assert record["feature_status"] != "DEGRADED"
    assert _rejects(tmp_path / "out.rejects.jsonl") == [
        (N // 2, "UnknownCurrency"),
        (N // 2 + 1, "AmountNotPositive"),
    ]
    assert _left_behind(tmp_path, source) == ["out.avro", "out.rejects.jsonl"]


def _parquet(path: Path, events: list[dict[str, Any]]) -> Path:
    """The events as a data-lake table: event_time a UTC millisecond timestamp column."""
    rows = [dict(e, event_time=datetime.fromtimestamp(e["event_time"] / 1000, UTC)) for e in events]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_and_avro_of_the_same_events_score_identically(
    events: list[dict[str, Any]], features: dict[str, str], tmp_path: Path
) -> None:
    avro_in = write_avro(tmp_path / "in.avro", events)
    parquet_in = _parquet(tmp_path / "in.parquet", events)
    runs = {
        "avro": _score(avro_in, tmp_path / "a.avro", features),
        "parquet": _score(parquet_in, tmp_path / "p.parquet", features),
        "avro-to-parquet": _score(avro_in, tmp_path / "ap.parquet", features),
    }
    assert all(r.returncode == 0 for r in runs.values()), {k: r.stderr for k, r in runs.items()}
    outputs = {name: _read(tmp_path / f"{name}") for name in ("a.avro", "p.parquet", "ap.parquet")}
    keys = ("transaction_id", "score", "decision", "feature_status", "event_time", "source_offset")
    project = {name: [tuple(r[k] for k in keys) for r in out] for name, out in outputs.items()}
    assert len(project["a.avro"]) == N
    assert project["p.parquet"] == project["a.avro"]  # identical scores, bit for bit
    assert project["ap.parquet"] == project["a.avro"]
    assert _rejects(tmp_path / "p.rejects.jsonl") == _rejects(tmp_path / "a.rejects.jsonl")
    columns = pq.read_schema(tmp_path / "p.parquet")
    assert columns.field("event_time").type == pa.timestamp("ms", tz="UTC")
    assert columns.field("score").type == pa.float64()


def test_parquet_rows_that_do_not_fit_the_schema_are_rejected_not_fatal(
    events: list[dict[str, Any]], features: dict[str, str], tmp_path: Path
) -> None:
    rows = [dict(e) for e in events[:20]]
    rows[3]["card_id"] = None  # a null where the schema has a string
    rows[5]["channel"] = "TELEPATHY"  # not a symbol of the enum
    source = _parquet(tmp_path / "in.parquet", rows)
    result = _score(source, tmp_path / "out.parquet", features)
    assert result.returncode == 0, result.stderr
    assert len(_read(tmp_path / "out.parquet")) == 18
    rejects = [
        json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text().splitlines()
    ]
    assert [(r["row"], r["error_class"]) for r in rejects] == [
        (3, "SchemaMismatch"),
        (5, "SchemaMismatch"),
    ]
    assert "card_id" in rejects[0]["message"]
    assert "channel" in rejects[1]["message"]


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p, ev: pq.write_table(pa.Table.from_pylist([{"x": 1}]), p), "no column"),
        (lambda p, ev: p.write_bytes(b"PAR1 not really"), "not a Parquet file"),
    ],
    ids=["missing-columns", "not-parquet"],
)
def test_a_bad_parquet_file_is_one_line_and_exit_2(
    make: Any, needle: str, events: list[dict[str, Any]], features: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "in.parquet"
    make(source, events)
    result = _score(source, tmp_path / "out.parquet", features)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("streamer: ")
    assert needle in lines[0], lines
    assert _left_behind(tmp_path, source) == []


def test_a_corrupt_block_midway_leaves_no_output_behind(
    events: list[dict[str, Any]], features: dict[str, str], tmp_path: Path
) -> None:
    """Blocks of ~50 events; the sync marker after the 10th is damaged."""
    source = write_avro(tmp_path / "in.avro", events, sync_interval=8000)
    data = bytearray(source.read_bytes())
    with source.open("rb") as fin:
        marker = fastavro.reader(fin)._header["sync"]
    at = -1
    for _ in range(11):  # the header's own marker, then ten block ends
        at = data.index(marker, at + 1)
    data[at] ^= 0xFF
    source.write_bytes(bytes(data))
    result = _score(source, tmp_path / "out.avro", features)
    assert result.returncode == 2, result.stderr
    assert "damaged" in result.stderr
    assert "Traceback" not in result.stderr
    assert _left_behind(tmp_path, source) == []


class _RedisLostAfterOneChunk:
    """A feature source: the real Redis for the first chunk, then a Redis that is gone."""

    def __init__(self, live: Any, dead: Any) -> None:
        self.calls = 0
        self._live, self._dead = live, dead

    def fetch(self, card_ids: Any, merchant_ids: Any, **_: Any) -> Any:
        self.calls += 1
        return (self._live if self.calls == 1 else self._dead).fetch(card_ids, merchant_ids)


def test_redis_lost_midway_leaves_no_output_behind(
    events: list[dict[str, Any]], features: dict[str, str], tmp_path: Path
) -> None:
    """In process: the first chunk is scored and written, then the feature cache is lost."""
    from streamer import ScoringKernel, load_model
    from streamer.backfill import score_file
    from streamer.features.breaker import CircuitBreaker
    from streamer.features.cache import FeatureCache
    from streamer.features.redis_client import make_redis_client

    model = load_model("fraud-gbt", REPO / "models")

    def cache(url: str) -> FeatureCache:
        return FeatureCache(
            make_redis_client(url, password=None, timeout_ms=500),
            prefix=features["STREAMER_REDIS_KEY_PREFIX"],
            card_defaults=model.card_defaults,
            merchant_defaults=model.merchant_defaults,
            breaker=CircuitBreaker(3, 5),
        )

    source = write_avro(tmp_path / "in.avro", events)
    flaky = _RedisLostAfterOneChunk(
        cache(features["STREAMER_REDIS_URL"]), cache("redis://127.0.0.1:1/0")
    )
    with pytest.raises(DependencyError, match="STREAMER_REDIS_URL"):
        score_file(
            source, tmp_path / "out.avro", kernel=ScoringKernel(model, flaky), chunk_size=500
        )
    assert flaky.calls == 2
    assert _left_behind(tmp_path, source) == []
