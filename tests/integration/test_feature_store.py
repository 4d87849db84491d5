"""Feature files and loading into a real Redis, read back the way enrichment reads them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import redis

from streamer import features as f
from streamer.errors import ConfigError, DependencyError
from streamer.features.loader import (
    load_command,
    load_feature_set,
    load_features,
    read_feature_file,
    synthetic_features,
)
from tests.cli import streamer_cli

NOW_MS = 1_767_225_600_000


def read_back(
    client: redis.Redis, keys: list[str], defaults: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    return f.unpack_rows(client.mget(keys), defaults)


def test_load_round_trips_through_mget(redis_client: redis.Redis, redis_prefix: str) -> None:
    cards = {f"card-{i}": np.arange(11, dtype=np.float64) + i for i in range(2500)}
    cards["card-epoch"] = [0, 1, 2, 3, 4, 5, 6, 7, 1_767_225_599.0, 9, 10]
    merchants = {"m-1": [0.5, 0.01, 0.02, 10.0, 30.0]}
    counts = load_features(redis_client, redis_prefix, cards, merchants, batch=1000)
    assert (counts.cards, counts.merchants) == (2501, 1)

    ids = ["card-0", "card-2499", "card-epoch", "card-missing"]
    rows, found = read_back(
        redis_client, [f.card_key(redis_prefix, i) for i in ids], f.CARD_DEFAULTS
    )
    assert found.tolist() == [True, True, True, False]
    np.testing.assert_array_equal(rows[0], np.arange(11))
    np.testing.assert_array_equal(rows[1], np.arange(11) + 2499)
    assert rows[2][f.CARD_INDEX["last_txn_time"]] == 1_767_225_599.0  # exact, not float32
    np.testing.assert_array_equal(rows[3], f.CARD_DEFAULTS)
    merchant, found = read_back(
        redis_client, [f.merchant_key(redis_prefix, "m-1")], f.MERCHANT_DEFAULTS
    )
    assert found.tolist() == [True]
    np.testing.assert_array_equal(merchant[0], [0.5, 0.01, 0.02, 10.0, 30.0])


def test_ttl_is_applied(redis_client: redis.Redis, redis_prefix: str) -> None:
    load_features(redis_client, redis_prefix, {"c": f.CARD_DEFAULTS}, batch=1, ttl_s=600)
    ttl = redis_client.ttl(f.card_key(redis_prefix, "c"))
    assert 0 < ttl <= 600


def test_wrong_width_writes_nothing(redis_client: redis.Redis, redis_prefix: str) -> None:
    cards = {"ok": f.CARD_DEFAULTS, "short": [1.0, 2.0]}
    with pytest.raises(ValueError, match="'short': 2 values, expected 11"):
        load_features(redis_client, redis_prefix, cards)
    assert redis_client.get(f.card_key(redis_prefix, "ok")) is None


def test_synthetic_set_matches_the_generated_stream(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    from streamer.dev import synth

    feature_set = synthetic_features(5, NOW_MS, n_cards=300, n_merchants=40)
    counts = load_feature_set(redis_client, redis_prefix, feature_set)
    assert (counts.cards, counts.merchants) == (300, 40)
    pop = synth.make_population(5, n_cards=300, n_merchants=40)
    events = synth.generate_events(pop, 200, seed=1, start_ms=NOW_MS)
    _, cards_found = read_back(
        redis_client, [f.card_key(redis_prefix, e["card_id"]) for e in events], f.CARD_DEFAULTS
    )
    _, merchants_found = read_back(
        redis_client,
        [f.merchant_key(redis_prefix, e["merchant_id"]) for e in events],
        f.MERCHANT_DEFAULTS,
    )
    assert cards_found.all()
    assert merchants_found.all()


def test_file_loads_end_to_end(
    redis_client: redis.Redis, redis_prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "features.csv"
    path.write_text(
        "entity,id,txn_count_24h,home_country,risk_score\ncard,card-a,3,DE,\nmerchant,m-a,,,0.25\n"
    )
    load_feature_set(redis_client, redis_prefix, read_feature_file(path))
    rows, _ = read_back(redis_client, [f.card_key(redis_prefix, "card-a")], f.CARD_DEFAULTS)
    assert rows[0][f.CARD_INDEX["txn_count_24h"]] == 3.0
    assert rows[0][f.CARD_INDEX["home_country"]] == f.country_code("DE")


def test_load_command_synthetic(
    redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    counts = load_command(
        client, prefix=redis_prefix, file=None, n_cards=50, n_merchants=10, now_ms=NOW_MS
    )
    assert str(counts) == "50 cards, 10 merchants"
    assert redis_client.exists(f.card_key(redis_prefix, "card-000049")) == 1


def test_features_load_hides_the_password() -> None:
    result = streamer_cli(
        "features", "load", "--synthetic", "--cards", "1", "--merchants", "1",
        "--redis-url", "redis://:hunter2@127.0.0.1:1/0",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "redis://:***@127.0.0.1:1/0" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_dead_redis_is_a_dependency_error() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=None)
    with pytest.raises(DependencyError, match="after 0 of 1 keys"):
        load_features(client, "x:", {"c": f.CARD_DEFAULTS})


# --- file parsing (no Redis needed) -----------------------------------------------------------


def test_json_lines_file(tmp_path: Path) -> None:
    path = tmp_path / "features.jsonl"
    lines = [
        {"entity": "card", "id": "card-1", "txn_count_1h": 4, "home_country": "FR",
         "last_country": 133, "last_txn_time": 1_767_225_000},
        {"entity": "merchant", "id": "m-1", "risk_score": 0.7},
        {"entity": "card", "id": "card-2"},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    feature_set = read_feature_file(path)
    card = feature_set.cards["card-1"]
    assert card[f.CARD_INDEX["txn_count_1h"]] == 4
    assert card[f.CARD_INDEX["home_country"]] == f.country_code("FR")
    assert card[f.CARD_INDEX["last_country"]] == 133
    assert card[f.CARD_INDEX["last_txn_time"]] == 1_767_225_000
    assert card[f.CARD_INDEX["card_age_days"]] == f.CARD_DEFAULTS[f.CARD_INDEX["card_age_days"]]
    np.testing.assert_array_equal(feature_set.cards["card-2"], f.CARD_DEFAULTS)
    assert feature_set.merchants["m-1"].tolist() == [0.7, *f.MERCHANT_DEFAULTS[1:].tolist()]


def test_csv_blank_cells_are_defaults(tmp_path: Path) -> None:
    path = tmp_path / "features.csv"
    path.write_text("entity,id,risk_score,txn_count_30d\nmerchant,m-1,,12\n")
    merchant = read_feature_file(path).merchants["m-1"]
    assert merchant.tolist() == [0.1, 0.005, 0.01, 12.0, 60.0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("f.jsonl", '{"entity": "card", "id": "c", "x": 1}\n', "f.jsonl:1: unknown card fields: x"),
        ("f.jsonl", '\n{"entity": "user", "id": "c"}\n', "f.jsonl:2: entity must be"),
        ("f.jsonl", '{"entity": "card", "id": ""}\n', "id must be a non-empty string"),
        ("f.jsonl", '{"entity": "card", "id": "c", "txn_count_1h": "many"}\n', "could not convert"),
        ("f.jsonl", '{"entity": "card", "id": "c", "txn_count_1h": true}\n', "is not a number"),
        ("f.jsonl", '{"entity": "card", "id": "c", "home_country": "Deu"}\n', "not an ISO alpha-2"),
        ("f.jsonl", '{"entity": "card", "id": "c", "txn_count_1h": NaN}\n', "is not finite"),
        ("f.jsonl", "[1, 2]\n", "expected a JSON object"),
        ("f.jsonl", "{oops\n", "not JSON"),
        ("f.csv", "entity,id,risk_score\nmerchant,m,x\n", "f.csv:2: could not convert"),
        ("f.parquet", "", "feature files are"),
    ],
)  # fmt: skip
def test_bad_files_name_file_and_line(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_feature_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read feature file"):
        read_feature_file(tmp_path / "nope.jsonl")
