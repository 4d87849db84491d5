"""A batch's trace headers are each message's headers of those names, as one at a time."""

from __future__ import annotations

from confluent_kafka import Message
from hypothesis import given
from hypothesis import strategies as st

from streamer.kafka.headers import read_headers, read_headers_many

ONLY = frozenset({"traceparent", "tracestate"})
_names = st.sampled_from(["traceparent", "tracestate", "baggage", "x-card"])
_values = st.one_of(st.none(), st.binary(max_size=8), st.text(max_size=8))
_headers = st.one_of(st.none(), st.lists(st.tuples(_names, _values), max_size=4))


def _wanted(headers: list[tuple[str, str | bytes | None]] | None) -> list[tuple[str, bytes]]:
    """The headers of ``ONLY``'s names with a value, in order, values as bytes."""
    return [
        (k, v.encode() if isinstance(v, str) else v) for k, v in headers or [] if k in ONLY and v
    ]


@given(st.lists(_headers, max_size=6))
def test_each_message_gets_its_own_trace_headers_or_none(
    batch: list[list[tuple[str, str | bytes | None]] | None],
) -> None:
    messages = [Message(topic="t", partition=0, offset=i, headers=h) for i, h in enumerate(batch)]

    read = read_headers_many(messages, ONLY)

    assert read == [_wanted(h) or None for h in batch]
    assert read == [read_headers(m, ONLY) or None for m in messages]
