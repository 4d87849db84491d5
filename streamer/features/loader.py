"""Writing card and merchant features to Redis: from a file, or the synthetic population.

The logic behind ``streamer features load``. Values are packed with ``streamer.features``
(``pack``, ``card_key``, ``merchant_key``) and written in pipelines of ``batch`` keys: one
MSET per batch, or SET with EX per key when a TTL is asked for.

Feature files
-------------
One record per entity; ``entity`` is ``card`` or ``merchant``, ``id`` its card or merchant
id, and every other field a name from ``CARD_FIELDS`` / ``MERCHANT_FIELDS``. Fields left out
(or empty in CSV) take the layout default; unknown fields are an error, so typos do not
silently become defaults. ``home_country`` and ``last_country`` accept ISO alpha-2 codes
("DE") or their numeric ``country_code``; ``last_txn_time`` is epoch seconds.

JSON Lines (``.jsonl``, ``.ndjson``)::

    {"entity": "card", "id": "card-000001", "txn_count_24h": 3, "home_country": "DE"}
    {"entity": "merchant", "id": "merchant-00001", "risk_score": 0.2}

CSV (``.csv``), a header row and one column per field used by any row::

    entity,id,txn_count_24h,home_country,risk_score
    card,card-000001,3,DE,
    merchant,merchant-00001,,,0.2
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import redis

from streamer.dev import synth
from streamer.errors import ConfigError, DependencyError
from streamer.features.layout import (
    CARD_DEFAULTS,
    CARD_FIELDS,
    MERCHANT_DEFAULTS,
    MERCHANT_FIELDS,
    card_key,
    merchant_key,
    pack,
)
from streamer.features.redis_client import REDIS_ERRORS, classify
from streamer.features.redis_cluster import is_cluster
from streamer.features.reference import country_code

Row = Sequence[float] | npt.NDArray[np.float64]
_COUNTRY_FIELDS = frozenset({"home_country", "last_country"})
_LAYOUTS = {"card": (CARD_FIELDS, CARD_DEFAULTS), "merchant": (MERCHANT_FIELDS, MERCHANT_DEFAULTS)}


@dataclass(frozen=True)
class FeatureSet:
    """Feature rows by entity id, in ``CARD_FIELDS`` / ``MERCHANT_FIELDS`` order."""

    cards: dict[str, npt.NDArray[np.float64]]
    merchants: dict[str, npt.NDArray[np.float64]]


@dataclass(frozen=True)
class LoadCounts:
    """How many keys of each kind were written."""

    cards: int
    merchants: int

    def __str__(self) -> str:
        return f"{self.cards} cards, {self.merchants} merchants"


def read_feature_file(path: Path) -> FeatureSet:
    """Parse a JSON Lines or CSV feature file (format in the module docstring).

    Raises ``ConfigError`` naming the file and line of the first bad record.
    """
    suffix = path.suffix.lower()
    if suffix not in {".jsonl", ".ndjson", ".csv"}:
        raise ConfigError(f"{path}: feature files are .jsonl/.ndjson (JSON Lines) or .csv")
    cards: dict[str, npt.NDArray[np.float64]] = {}
    merchants: dict[str, npt.NDArray[np.float64]] = {}
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            records = _csv_records(handle) if suffix == ".csv" else _json_records(handle)
            for line, record in records:
                try:
                    entity, entity_id, row = parse_record(record)
                except (ValueError, TypeError) as exc:
                    raise ConfigError(f"{path}:{line}: {exc}") from None
                (cards if entity == "card" else merchants)[entity_id] = row
    except OSError as exc:
        raise ConfigError(f"cannot read feature file {path}: {exc.strerror}") from None
    return FeatureSet(cards, merchants)


def _json_records(handle: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{handle.name}:{line}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{handle.name}:{line}: expected a JSON object per line")
        yield line, record


def _csv_records(handle: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.DictReader(handle)
    for record in reader:
        # Empty cells mean "default"; the header line is line 1.
        yield reader.line_num, {k: v for k, v in record.items() if v not in ("", None)}


def parse_record(record: Mapping[str, Any]) -> tuple[str, str, npt.NDArray[np.float64]]:
    entity = record.get("entity")
    if entity not in _LAYOUTS:
        raise ValueError(f"entity must be 'card' or 'merchant', got {entity!r}")
    entity_id = record.get("id")
    if not isinstance(entity_id, str) or not entity_id:
        raise ValueError("id must be a non-empty string")
    fields, defaults = _LAYOUTS[entity]
    unknown = sorted(set(record) - set(fields) - {"entity", "id"})
    if unknown:
        raise ValueError(f"unknown {entity} fields: {', '.join(unknown)}")
    row = defaults.copy()
    for i, name in enumerate(fields):
        if name in record:
            row[i] = _number(name, record[name])
    return entity, entity_id, row


def _number(name: str, value: Any) -> float:
    if name in _COUNTRY_FIELDS and isinstance(value, str) and value.isalpha():
        code = country_code(value)
        if code == 0.0:
            raise ValueError(f"{name}: {value!r} is not an ISO alpha-2 country")
        return code
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name}: {value!r} is not a number")
    number = float(value)  # raises ValueError with the text for non-numeric strings
    if not np.isfinite(number):
        raise ValueError(f"{name}: {value!r} is not finite")
    return number


def synthetic_features(
    seed: int, now_ms: int, *, n_cards: int = 5000, n_merchants: int = 500
) -> FeatureSet:
    """Features of ``synth.make_population(seed, n_cards, n_merchants)`` as of ``now_ms``;
    the same arguments as ``streamer produce`` make the stream and the cache agree."""
    pop = synth.make_population(seed, n_cards=n_cards, n_merchants=n_merchants)
    card_cols = synth.card_features(pop, now_ms)
    merchant_cols = synth.merchant_features(pop)
    cards = np.column_stack([card_cols[name] for name in CARD_FIELDS])
    merchants = np.column_stack([merchant_cols[name] for name in MERCHANT_FIELDS])
    return FeatureSet(
        cards=dict(zip(pop.card_ids, cards, strict=True)),
        merchants=dict(zip(pop.merchant_ids, merchants, strict=True)),
    )


def load_features(
    client: redis.Redis,
    prefix: str,
    cards: Mapping[str, Row],
    merchants: Mapping[str, Row] | None = None,
    *,
    batch: int = 1000,
    ttl_s: int | None = None,
) -> LoadCounts:
    """Write packed features under ``prefix``; one pipeline round trip per ``batch`` keys
    (on a Redis Cluster: a SET per key, the pipeline one round trip per node a batch).

    Rows of the wrong width raise ``ValueError`` before anything is written; Redis
    failures raise ``DependencyError`` saying how many keys were already written.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    merchants = merchants or {}
    items = [
        *_packed(cards, CARD_FIELDS, lambda i: card_key(prefix, i), "card"),
        *_packed(merchants, MERCHANT_FIELDS, lambda i: merchant_key(prefix, i), "merchant"),
    ]
    written = 0
    try:
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            pipe = client.pipeline(transaction=False)
            if ttl_s is None and not is_cluster(client):
                pipe.mset(dict(chunk))
            else:
                for key, value in chunk:
                    pipe.set(key, value, ex=ttl_s)
            pipe.execute()
            written += len(chunk)
    except REDIS_ERRORS as exc:
        reason = {"auth": "authentication failed", "tls": "TLS handshake failed"}
        raise DependencyError(
            f"writing features to Redis {reason.get(classify(exc), 'failed')} after {written} "
            f"of {len(items)} keys: {type(exc).__name__}: {exc}"
        ) from exc
    return LoadCounts(cards=len(cards), merchants=len(merchants))


def load_feature_set(
    client: redis.Redis, prefix: str, features: FeatureSet, **kwargs: Any
) -> LoadCounts:
    """``load_features`` for a ``FeatureSet`` (from a file or ``synthetic_features``)."""
    return load_features(client, prefix, features.cards, features.merchants, **kwargs)


def _packed(
    rows: Mapping[str, Row], fields: tuple[str, ...], key: Callable[[str], str], entity: str
) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for entity_id, row in rows.items():
        if len(row) != len(fields):
            raise ValueError(f"{entity} {entity_id!r}: {len(row)} values, expected {len(fields)}")
        out.append((key(entity_id), pack(row)))
    return out


def load_command(
    client: redis.Redis,
    *,
    prefix: str,
    file: Path | None,
    seed: int = 7,
    n_cards: int = 5000,
    n_merchants: int = 500,
    batch: int = 1000,
    ttl_s: int | None = None,
    now_ms: int | None = None,
) -> LoadCounts:
    """``streamer features load``: ``file`` when given, else the synthetic population of
    ``seed`` / ``n_cards`` / ``n_merchants`` as of ``now_ms`` (default: now). The client comes
    from the one factory, so TLS and AUTH work as they do for ``run``."""
    if file is not None:
        feature_set = read_feature_file(file)
    else:
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        feature_set = synthetic_features(seed, now, n_cards=n_cards, n_merchants=n_merchants)
    try:
        return load_feature_set(client, prefix, feature_set, batch=batch, ttl_s=ttl_s)
    finally:
        client.close()
