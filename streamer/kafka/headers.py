"""Reading a consumed message's headers without trusting them.

confluent-kafka decodes header names as UTF-8 inside ``Message.headers()`` and raises
(``SystemError``) on a name that is not: one hostile header must not crash the loop. Such
headers are unreadable from Python at all, so they are reported as None and the record is
handled without them (its trace context, if any, is lost; a dead letter says so).
"""

from __future__ import annotations

import logging

from confluent_kafka import Message

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


def read_headers(msg: Message) -> Headers | None:
    """(name, bytes) pairs, None values as empty bytes; None when the client cannot read them."""
    try:
        raw = msg.headers()
    except (SystemError, UnicodeDecodeError, ValueError, TypeError):
        return None
    if not raw:
        return []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in items]
