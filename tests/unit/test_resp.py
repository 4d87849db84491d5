"""The hand-packed commands (``resp.pack``) are byte for byte redis-py's own packing of the
same flat arguments, for any text ids and prefixes, any bytes, any lengths."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.connection import Connection

from streamer.features.resp import Blobs, Keys, pack
from streamer.features.velocity_store import velocity_key, velocity_keys

# Text of any script (hypothesis leaves out lone surrogates, which no encoder can send),
# ASCII ids of one length (the packer's common case) and of mixed lengths.
_TEXT = st.text(max_size=12)
_ASCII_IDS = st.integers(1, 9).flatmap(
    lambda n: st.lists(st.text("abc-0123456789", min_size=n, max_size=n), max_size=30)
)
_IDS = st.one_of(_ASCII_IDS, st.lists(_TEXT, max_size=30))
_KEYS = st.builds(Keys, _TEXT, _IDS, _TEXT)
_BLOBS = st.builds(Blobs, st.lists(st.binary(max_size=300), max_size=30))
_SCALARS = st.one_of(_TEXT, st.binary(max_size=40), st.integers(-(2**63), 2**64))


def _flat(args: tuple[str | bytes | int | Keys | Blobs, ...]) -> list[str | bytes | int]:
    out: list[str | bytes | int] = []
    for arg in args:
        if isinstance(arg, Keys):
            out += [arg.prefix + key + arg.suffix for key in arg.ids]
        elif isinstance(arg, Blobs):
            out += arg.items
        else:
            out.append(arg)
    return out


def _redis_py(args: list[str | bytes | int]) -> bytes:
    return b"".join(Connection().pack_command(*args))  # type: ignore[no-untyped-call]


@settings(max_examples=300)
@given(st.lists(st.one_of(_KEYS, _BLOBS, _SCALARS), max_size=5))
def test_packed_as_redis_py_packs_the_flat_arguments(
    rest: list[str | bytes | int | Keys | Blobs],
) -> None:
    args = ("EVALSHA", *rest)
    assert pack(*args) == _redis_py(_flat(args))


@given(_KEYS)
def test_keys_as_strings_are_the_packed_keys(keys: Keys) -> None:
    assert pack("MGET", keys) == _redis_py(["MGET", *keys.strings()])


@given(st.text(max_size=8), _IDS)
def test_velocity_keys_are_each_cards_velocity_key(prefix: str, cards: list[str]) -> None:
    assert velocity_keys(prefix, cards).strings() == [velocity_key(prefix, c) for c in cards]


def test_an_id_redis_py_cannot_encode_is_refused_alike() -> None:
    with pytest.raises(UnicodeEncodeError):
        _redis_py(["MGET", "p:card-\ud800"])
    with pytest.raises(UnicodeEncodeError):
        pack("MGET", Keys("p:", ["card-1", "card-\ud800"]))


@pytest.mark.parametrize("bad", [b"card-1", 7, None])
def test_an_id_that_is_not_text_is_a_type_error(bad: object) -> None:
    keys = Keys("p:", ["card-1", bad])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        pack("MGET", keys)
    with pytest.raises(TypeError):
        keys.strings()
