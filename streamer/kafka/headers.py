"""Reading a consumed message's headers without trusting them.

confluent-kafka decodes header names as UTF-8 inside ``Message.headers()`` and raises
(``SystemError``) on a name that is not: one hostile header must not crash the loop. Such
headers are unreadable from Python at all, so they are reported as None and the record is
handled without them (its trace context, if any, is lost; a dead letter says so).

Worse, the client builds the list before it notices the failure and keeps it: a second
call, and with some header mixes even the first, returns a list holding a tuple whose name
is a NULL pointer, the decoding error left pending (it surfaces at the next C call);
touching that name crashes the interpreter (SIGSEGV; confluent-kafka 2.16.1,
``c_headers_to_py``). So the list is checked at once without touching its items
(``gc.get_referents`` skips NULL slots, and raises the pending error if any), and a
message found unreadable is remembered by its position and never asked again: the trace
reader and the dead-letter writer both come here for the same message.
"""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict
from collections.abc import Sequence

from confluent_kafka import Message

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
_Items = list[tuple[str, str | bytes | None]]
_Position = tuple[str | None, int | None, int | None, int]
_UNREADABLE: OrderedDict[_Position, None] = OrderedDict()
_REMEMBERED = 100_000  # unreadable records remembered (a tuple each), oldest forgotten first
_UNREADABLE_ERRORS = (SystemError, UnicodeDecodeError, ValueError, TypeError)


def read_headers(msg: Message, only: frozenset[str] | None = None) -> Headers | None:
    """(name, bytes) pairs, None values as empty bytes; None when the client cannot read them.

    ``only``: just the headers of these names with a non-empty value (one pass, no copy of
    the others: the trace headers of every message are read this way).
    """
    if _UNREADABLE and _position(msg) in _UNREADABLE:  # none so far: nothing to look up
        return None
    items = _checked(msg)
    if items is None:
        return None
    if only is not None:
        return _kept(items, only) or []
    return [(k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in items]


def read_headers_many(messages: Sequence[Message], only: frozenset[str]) -> list[Headers | None]:
    """``read_headers(msg, only) or None`` of each message, in one pass: a batch's trace
    headers. The rule, no headers or one header of these names holding bytes (a
    ``traceparent``), is read in line: no call, no filtering pass, no copy of the pair."""
    out: list[Headers | None] = []
    append = out.append
    referents = gc.get_referents
    for msg in messages:
        if _UNREADABLE and _position(msg) in _UNREADABLE:
            append(None)
            continue
        try:  # ``_checked`` for the rule's shapes: the same client call, the same check
            raw = msg.headers()
            if raw is None:
                append(None)
                continue
            if raw.__class__ is list and len(raw) == 1 and len(referents(pair := raw[0])) == 2:
                name, value = pair
                if name in only and value.__class__ is bytes and value:
                    append([pair])  # type: ignore[list-item]  # value is bytes (checked)
                    continue
        except _UNREADABLE_ERRORS:
            _unreadable(msg)
            append(None)
            continue
        append(_kept(_checked_items(msg, raw), only))
    return out


def _kept(items: _Items | None, only: frozenset[str]) -> Headers | None:
    """The items of these names with a value, values as bytes; None when there are none."""
    if not items:  # none, or unreadable
        return None
    kept = [(k, v.encode() if isinstance(v, str) else v) for k, v in items if k in only and v]
    return kept or None


def _checked(msg: Message) -> _Items | None:
    """The message's header items, asked of the client once; None when it cannot read
    them (the message is then remembered as unreadable)."""
    try:
        raw = msg.headers()
    except _UNREADABLE_ERRORS:
        _unreadable(msg)
        return None
    return _checked_items(msg, raw)


def _checked_items(
    msg: Message, raw: _Items | dict[str, str | bytes | None] | None
) -> _Items | None:
    """``raw``, what ``msg.headers()`` returned, as a list of items once checked without
    touching them; None when the client could not read them (see ``_checked``)."""
    if raw is None:  # no headers (most messages): nothing to check
        return []
    try:
        items = list(raw.items()) if isinstance(raw, dict) else raw
        # Also surfaces the decoding error the client may leave pending with the list.
        broken = len(gc.get_referents(*items)) != 2 * len(items)
    except _UNREADABLE_ERRORS:
        broken = True
    if broken:  # a NULL slot in the list: never touch it
        _unreadable(msg)
        return None
    return items


def _unreadable(msg: Message) -> None:
    """The client cannot read ``msg``'s headers: remember it, so it is never asked again."""
    _remember(_position(msg))


def _position(msg: Message) -> _Position:
    return (msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1])


def _remember(position: _Position) -> None:
    _UNREADABLE[position] = None
    if len(_UNREADABLE) > _REMEMBERED:
        _UNREADABLE.popitem(last=False)
