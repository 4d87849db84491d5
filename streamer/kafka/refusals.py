"""Permanent refusals: what to send instead of a record the broker will never take.

A failure is either retriable (a timeout, a broker restarting: the input is reprocessed,
its partition rewound) or permanent for that record (too large, invalid, refused by the
topic's policy), which reprocessing cannot fix. A permanent refusal never blocks a
partition: a refused scored event is replaced by a dead letter of its input saying why; a
refused dead letter is re-sent cut down (``dead_letters.truncated``), smaller each time;
when even the smallest is refused for ``give_up_after_s`` with nothing acknowledged
meanwhile, the stream stops (``DeadLetterRefusedError``) with one line naming the topic and
the broker's reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaError

from streamer.errors import Rejection, StreamerError
from streamer.kafka.delivery import Output

PERMANENT = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.POLICY_VIOLATION,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError._INVALID_ARG,
        KafkaError._BAD_MSG,
    }
)
"""Errors that reprocessing the same record cannot fix."""
SMALLEST_LETTER = 1024
SMALLEST_RETRIES = 8  # sends of the smallest letter before the partition is rewound


class DeadLetterRefusedError(StreamerError):
    """Even a cut-down dead letter is refused: stopping beats losing or looping (exit 4)."""

    exit_code = 4


@dataclass(frozen=True)
class Letter:
    """The dead letter to send for a refused output's input."""

    rejection: Rejection
    budget: int = 0  # bytes to cut it to; 0: whole
    attempts: int = 0  # sends of the smallest size so far, this one included
    pause_s: float = 0.0  # wait before sending (the smallest, again)


def next_letter(output: Output, reason: str, max_bytes: int) -> Letter | None:
    """The dead letter that replaces ``output``, refused for good for ``reason``; None when
    even the smallest was refused ``SMALLEST_RETRIES`` times (the input is then retried
    after a rewind)."""
    if output.rejection is None:
        return Letter(Rejection("OutputRefused", f"scored event refused: {reason}", "publish"))
    budget = output.budget // 4 if output.budget else max_bytes
    if budget < SMALLEST_LETTER and output.attempts < SMALLEST_RETRIES:
        # The broker limits a record *batch*: a letter that fits alone can be refused
        # beside others. Send the smallest again, alone, after a short pause.
        pause_s = 0.05 * (output.attempts + 1)
        return Letter(output.rejection, SMALLEST_LETTER, output.attempts + 1, pause_s)
    if budget >= SMALLEST_LETTER:
        return Letter(output.rejection, budget)
    return None


class GiveUpClock:
    """How long the smallest dead letter has been refused with nothing acknowledged."""

    def __init__(self, after_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._after_s = after_s
        self._monotonic = monotonic
        self._since: float | None = None
        self._delivered_then = 0

    def refused(self, delivered: int) -> bool:
        """One more refusal, ``delivered`` outputs acknowledged so far: True when it is
        time to give up (refused for ``after_s`` with no acknowledgement meanwhile)."""
        now = self._monotonic()
        if self._since is None or delivered != self._delivered_then:
            self._since, self._delivered_then = now, delivered
        return now - self._since >= self._after_s


def refused_for_good(topic: str, reason: str) -> DeadLetterRefusedError:
    """The one line the stream stops with."""
    return DeadLetterRefusedError(
        f"the dead-letter topic {topic!r} refuses even a {SMALLEST_LETTER}-byte dead "
        f"letter ({reason}); check the topic (max.message.bytes, policies, ACLs)"
    )
