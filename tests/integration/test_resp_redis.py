"""Hand-packed commands (``resp.pack``) in a real Redis: keys of any text and values of any
bytes reach Redis exactly as redis-py's own commands send them, through the feature
cache's MGET and the velocity write."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator, Sequence

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.features.held_connection import HeldConnection, mget_of
from streamer.features.redis_client import make_redis_client
from streamer.features.resp import Blobs, Keys, pack
from streamer.features.velocity_state import HEADER_SIZE, HIGH_OFFSET
from streamer.features.velocity_store import RedisVelocityStore, velocity_key, write_states

_REDIS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
_IDS = st.lists(st.text(max_size=10), min_size=1, max_size=40)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """The stream's client (``make_redis_client``), for the paths that pack by hand."""
    made = make_redis_client(redis_url, password=None, timeout_ms=2000)
    yield made
    made.close()


@pytest.fixture
def mget(client: redis.Redis) -> Callable[[Sequence[Keys]], list[bytes | None]]:
    """The feature cache's MGET (one held connection)."""
    return mget_of(client)


@_REDIS
@given(st.text(max_size=6), _IDS, st.text(max_size=3), st.data())
def test_mget_reads_what_redis_py_wrote(
    mget: Callable[[Sequence[Keys]], list[bytes | None]],
    redis_client: redis.Redis,
    redis_prefix: str,
    prefix: str,
    ids: list[str],
    suffix: str,
    data: st.DataObject,
) -> None:
    keys = Keys(redis_prefix + prefix, ids, suffix)
    strings = keys.strings()
    written = data.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
    values = data.draw(st.lists(st.binary(max_size=200), min_size=len(ids), max_size=len(ids)))
    bare = Keys(redis_prefix, ids)
    redis_client.delete(*strings)
    mapping = {k: v for k, v, w in zip(strings, values, written, strict=True) if w}
    if mapping:
        redis_client.mset(mapping)
    expected = redis_client.mget([*strings, *bare.strings()])
    assert mget([keys, bare]) == expected


@_REDIS
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=40))
def test_values_reach_redis_byte_for_byte(
    redis_client: redis.Redis, redis_prefix: str, values: list[bytes]
) -> None:
    key = f"{redis_prefix}list"
    redis_client.delete(key)
    conn = redis_client.connection_pool.get_connection()
    try:
        conn.send_packed_command([pack("RPUSH", key, Blobs(values))])  # type: ignore[no-untyped-call]
        assert conn.read_response() == len(values)  # type: ignore[no-untyped-call]
    finally:
        redis_client.connection_pool.release(conn)
    assert redis_client.lrange(key, 0, -1) == values


@_REDIS
@given(st.dictionaries(st.text(max_size=10), st.binary(max_size=100), min_size=1, max_size=30))
def test_velocity_states_of_any_card_ids_are_written_and_read_back(
    client: redis.Redis, redis_client: redis.Redis, redis_prefix: str, tails: dict[str, bytes]
) -> None:
    store = RedisVelocityStore(client, redis_prefix)
    cards = list(tails)
    redis_client.delete(*(velocity_key(redis_prefix, card) for card in cards))
    positions = {card: 10 + i for i, card in enumerate(cards)}
    updates = {card: _state(positions[card], tails[card]) for card in cards}
    assert write_states(client, redis_prefix, updates, positions).written == len(cards)
    assert store.read(cards) == [updates[card] for card in cards]


def _state(position: int, tail: bytes) -> bytes:
    """Bytes the write takes for a state at ``position`` (a version byte and the high at
    its offset; the script overwrites what it cannot read as a state)."""
    head = bytearray(HEADER_SIZE)
    head[0] = 1
    struct.pack_into("<Q", head, HIGH_OFFSET, position + 1)
    return bytes(head) + tail


def test_a_reply_left_unread_never_answers_the_next_command(
    client: redis.Redis, redis_client: redis.Redis, redis_prefix: str
) -> None:
    redis_client.set(f"{redis_prefix}a", b"A")
    held = HeldConnection(client)
    first = held.send(pack("GET", f"{redis_prefix}a"))
    second = held.send(pack("PING"))  # before the first reply is read
    assert second() in (b"PONG", True)
    with pytest.raises(redis.ConnectionError):
        first()
    assert held.mget([Keys(redis_prefix, ["a", "b"])]) == [b"A", None]


def test_work_given_to_an_mget_runs_after_redis_has_the_read_and_before_its_reply_is_read(
    client: redis.Redis, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """The feature cache's read is split (``HeldConnection.mget``'s ``meanwhile``): the
    work runs once the MGET went out, so Redis serves it meanwhile. Seen from a second
    connection: Redis has run the held connection's MGET while the work still runs."""
    redis_client.set(f"{redis_prefix}a", b"A")
    held = HeldConnection(client)
    assert held.send(pack("CLIENT", "SETNAME", "held-under-test"))() in (b"OK", True)
    served: list[bool] = []

    def meanwhile() -> None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            clients = redis_client.client_list()
            if any(c["name"] == "held-under-test" and c["cmd"] == "mget" for c in clients):
                served.append(True)
                return
            time.sleep(0.005)
        served.append(False)

    values = held.mget([Keys(redis_prefix, ["a", "b"])], meanwhile)

    assert served == [True]
    assert values == [b"A", None]


def test_a_read_whose_work_failed_leaves_the_connection_usable(
    client: redis.Redis, redis_client: redis.Redis, redis_prefix: str
) -> None:
    redis_client.set(f"{redis_prefix}a", b"A")
    held = HeldConnection(client)

    def fails() -> None:
        raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        held.mget([Keys(redis_prefix, ["a"])], fails)  # its reply is left unread

    assert held.mget([Keys(redis_prefix, ["b", "a"])]) == [None, b"A"]
