"""Velocity states in a real Redis: one pipelined write per batch, compare-and-set on the
position, TTL, bytes per card, and failures reported as values."""

from __future__ import annotations

import statistics
from typing import Any

import pytest
import redis

from streamer.dev.devstack.redis import RedisServer
from streamer.features.redis_client import make_redis_client
from streamer.features.velocity import DAY_MS, fold
from streamer.features.velocity_state import HIGH_OFFSET, high_position, rebase
from streamer.features.velocity_store import (
    TTL_S,
    MemoryVelocityStore,
    RedisVelocityStore,
    WriteResult,
    velocity_key,
    write_states,
)

T0 = 1_767_225_600_000


def states(cards: list[str], position: int, n: int = 3) -> tuple[dict[str, bytes], dict[str, int]]:
    """Each card's state after ``n`` events, the last at ``position``."""
    batch = fold(
        {},
        [c for c in cards for _ in range(n)],
        [f"{c}-{i}" for c in cards for i in range(n)],
        [position - n + 1 + i for _ in cards for i in range(n)],
        [T0 + i * 60_000 for _ in cards for i in range(n)],
        [12.5] * (n * len(cards)),
        ["m"] * (n * len(cards)),
        [133.0] * (n * len(cards)),
    )
    return batch.updates, batch.positions


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times a client wrote to a Redis socket (one per round trip)."""
    seen: list[int] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        seen.append(1)
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return seen


def test_a_batch_is_one_round_trip(
    redis_client: redis.Redis, redis_prefix: str, sends: list[int]
) -> None:
    updates, positions = states([f"card-{i}" for i in range(300)], position=10)
    warm, warm_positions = states(["warm"], position=5)  # the first write caches the script
    write_states(redis_client, redis_prefix, warm, warm_positions)
    sends.clear()
    assert write_states(redis_client, redis_prefix, updates, positions) == WriteResult(300)
    assert len(sends) == 1
    stored = RedisVelocityStore(redis_client, redis_prefix).read(list(updates))
    assert stored == list(updates.values())


def test_after_a_script_flush_the_calls_go_again_as_eval(
    redis_client: redis.Redis, redis_prefix: str, sends: list[int]
) -> None:
    redis_client.script_flush()
    updates, positions = states(["a", "b"], position=5)
    sends.clear()
    assert write_states(redis_client, redis_prefix, updates, positions) == WriteResult(2)
    assert len(sends) == 2  # EVALSHA answered NOSCRIPT, then EVAL (which caches it)
    newer, newer_positions = states(["a", "b"], position=9)
    sends.clear()
    assert write_states(redis_client, redis_prefix, newer, newer_positions) == WriteResult(2)
    assert len(sends) == 1


def test_compare_and_set_refuses_an_older_or_equal_position(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    new, new_pos = states(["a", "b", "c"], position=100)
    old, old_pos = states(["a", "b"], position=50, n=2)
    assert write_states(redis_client, redis_prefix, old, old_pos) == WriteResult(2)
    # a mixed pipeline: a and b are fresh, then the same again is stale, c is new
    assert write_states(redis_client, redis_prefix, new, new_pos) == WriteResult(3)
    assert write_states(redis_client, redis_prefix, old, old_pos) == WriteResult(0, 2)
    assert write_states(redis_client, redis_prefix, new, new_pos) == WriteResult(0, 3)
    for card in "abc":
        assert redis_client.get(velocity_key(redis_prefix, card)) == new[card]


def test_positions_past_two_to_the_53_compare_exactly(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Lua numbers are doubles: 2**60 and 2**60 + 1 are one double, but not one position."""
    low, low_pos = states(["a"], position=2**60)
    high, high_pos = states(["a"], position=2**60 + 1)
    assert write_states(redis_client, redis_prefix, low, low_pos) == WriteResult(1)
    assert write_states(redis_client, redis_prefix, high, high_pos) == WriteResult(1)
    assert write_states(redis_client, redis_prefix, low, low_pos) == WriteResult(0, 1)
    stored = redis_client.get(velocity_key(redis_prefix, "a"))
    assert high_position(stored) == 2**60 + 1


@pytest.mark.parametrize("foreign", [b"", b"hello", b"\x01" + b"\xff" * 40, b"\x02" + bytes(60)])
def test_a_value_that_is_not_a_state_is_overwritten(
    redis_client: redis.Redis, redis_prefix: str, foreign: bytes
) -> None:
    """Bytes of another version, truncated or garbage (even with a huge 'position' where
    ours sits) must not lock a card out of its state forever."""
    key = velocity_key(redis_prefix, "a")
    redis_client.set(key, foreign)
    updates, positions = states(["a"], position=7)
    assert write_states(redis_client, redis_prefix, updates, positions) == WriteResult(1)
    assert redis_client.get(key) == updates["a"]


def test_ttl_is_set_on_every_write(redis_client: redis.Redis, redis_prefix: str) -> None:
    updates, positions = states(["a"], position=3)
    write_states(redis_client, redis_prefix, updates, positions, ttl_s=600)
    assert 590_000 < redis_client.pttl(velocity_key(redis_prefix, "a")) <= 600_000
    updates, positions = states(["a"], position=4)
    write_states(redis_client, redis_prefix, updates, positions)
    assert redis_client.pttl(velocity_key(redis_prefix, "a")) > (TTL_S - 10) * 1000


@pytest.mark.parametrize("card", ["a}b", "{x}", "}{", "c{1}d", ""])
def test_card_ids_with_braces(redis_client: redis.Redis, redis_prefix: str, card: str) -> None:
    updates, positions = states([card], position=3)
    assert write_states(redis_client, redis_prefix, updates, positions) == WriteResult(1)
    assert velocity_key(redis_prefix, card) == f"{redis_prefix}vel:v1:{{{card}}}"
    assert RedisVelocityStore(redis_client, redis_prefix).read([card]) == [updates[card]]


def test_failures_are_reported_not_raised(own_redis: RedisServer) -> None:
    client = make_redis_client(own_redis.url, password=None, timeout_ms=200)
    updates, positions = states(["a", "b"], position=3)
    assert write_states(client, "p:", updates, positions) == WriteResult(2)
    own_redis.stop()
    newer, newer_positions = states(["a", "b"], position=8)
    assert write_states(client, "p:", newer, newer_positions) == WriteResult(
        failed=2, error="outage"
    )
    own_redis.start()  # empty again (no persistence): the states heal from the next write
    assert write_states(client, "p:", newer, newer_positions) == WriteResult(2)


def test_memory_store_has_the_same_semantics() -> None:
    store = MemoryVelocityStore()
    new, new_pos = states(["a", "b"], position=20)
    old, old_pos = states(["a"], position=10)
    assert store.write(old, old_pos) == WriteResult(1)
    assert store.write(new, new_pos) == WriteResult(2)
    assert store.write(old, old_pos) == WriteResult(0, 1)
    assert store.read(["a", "b", "z"]) == [new["a"], new["b"], None]


def test_memory_per_card_at_20_transactions_a_day(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Redis's own accounting (MEMORY USAGE: value, key and overhead) after 30 days of 20
    transactions a day, written the way the stream writes (a batch a day). The 200 cards
    share their partition with others: 50 offsets apart on average (200,000 events a day,
    about 2 a second, a quiet partition)."""
    cards = [f"card-{i:06d}" for i in range(200)]
    stored: dict[str, bytes] = {}
    position = 0
    for day in range(30):
        n = 20 * len(cards)
        ids = [c for c in cards for _ in range(20)]
        batch = fold(
            stored,
            ids,
            [f"{c}-{day}-{i}" for c in cards for i in range(20)],
            list(range(position, position + 50 * n, 50)),
            [T0 + day * DAY_MS + i * (DAY_MS // 20) + 1_000 for _ in cards for i in range(20)],
            [10.0 + (i % 7) * 3.25 for i in range(n)],
            [f"m{i % 13}" for i in range(n)],
            [133.0] * n,
        )
        position += 50 * n
        stored.update(batch.updates)
        write_states(redis_client, redis_prefix, batch.updates, batch.positions)
    usage = [redis_client.memory_usage(velocity_key(redis_prefix, c), samples=0) for c in cards]
    sizes = [len(stored[c]) for c in cards]
    assert all(u is not None for u in usage)
    median = statistics.median([u for u in usage if u is not None])
    value = statistics.median(sizes)
    print(f"\nvelocity state: {value:.0f} bytes, MEMORY USAGE {median:.0f} bytes a card")
    assert int.from_bytes(stored[cards[0]][HIGH_OFFSET : HIGH_OFFSET + 8], "little") > 0
    assert median <= 2048


def test_one_pipeline_of_stale_and_fresh_states(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """A handover: the stored a is ahead of this instance, b behind it, c new."""
    ahead, ahead_pos = states(["a"], position=100)
    behind, behind_pos = states(["b"], position=40)
    assert write_states(
        redis_client, redis_prefix, {**ahead, **behind}, {**ahead_pos, **behind_pos}
    ) == WriteResult(2)
    mine, mine_pos = states(["a", "b", "c"], position=60)
    assert write_states(redis_client, redis_prefix, mine, mine_pos) == WriteResult(2, 1)
    stored = RedisVelocityStore(redis_client, redis_prefix).read(["a", "b", "c"])
    assert stored == [ahead["a"], mine["b"], mine["c"]]


def test_a_rebased_seed_is_written_where_there_is_no_state_in_both_stores(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    """A seed rebased before every position goes into an empty slot (and over bytes that
    are not a state), never over a live state, in Redis and in memory alike."""
    seed = rebase(states(["a"], position=900)[0]["a"])
    assert seed is not None
    live, live_pos = states(["b"], position=3)
    memory = MemoryVelocityStore()
    memory.states["c"] = b"junk"
    redis_client.set(velocity_key(redis_prefix, "c"), b"junk")
    for store in (memory, RedisVelocityStore(redis_client, redis_prefix)):
        assert store.write(live, live_pos) == WriteResult(1)
        seeds = dict.fromkeys("abc", seed)
        assert store.write(seeds, dict.fromkeys("abc", -1)) == WriteResult(2, 1)
        assert store.read(["a", "b", "c"]) == [seed, live["b"], seed]


def test_a_position_the_state_does_not_hold_is_refused_before_anything_is_sent(
    redis_client: redis.Redis, redis_prefix: str, sends: list[int]
) -> None:
    updates, positions = states(["a", "b"], position=7)
    with pytest.raises(ValueError, match="does not hold position 6"):
        write_states(redis_client, redis_prefix, updates, {**positions, "b": 6})
    with pytest.raises(ValueError, match="does not hold position 7"):
        write_states(redis_client, redis_prefix, {"a": b"\x01" * 9}, {"a": 7})  # not a state
    assert sends == []
