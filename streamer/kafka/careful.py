"""The careful path: one output at a time, each with its own delivery callback.

Dead letters go this way, and so do the scored events the hot path could not queue (the
local queue was full, or librdkafka refused the record before queueing it). A full queue
blocks here, serving delivery reports, until there is room; a refusal before queueing is
answered at once as a failed delivery, so every output ends in exactly one answer, given
to ``answer``. Outputs stay here until answered, or until settling finds the producer empty
(``take_all``: each was acknowledged).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streamer.kafka.delivery import Output
from streamer.kafka.headers import Headers

ProducerHeaders = list[tuple[str, str | bytes | None]] | None
Answer = Callable[[Output, KafkaError | None, Message | None], None]
"""Where the broker's answer for an output goes: (output, error or None, message)."""


class CarefulSender:
    """Produces outputs one by one and hands each one's answer to ``answer``, once."""

    def __init__(self, producer: Producer, answer: Answer) -> None:
        self._producer = producer
        self._answer = answer
        self._waiting: dict[int, Output] = {}  # by id: queued, not answered yet

    def __len__(self) -> int:
        return len(self._waiting)

    def produce(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes | None,
        headers: Headers | None,
        timestamp: int,
        output: Output,
    ) -> None:
        """Queue ``output``'s record (``timestamp`` 0: now), waiting for room if need be."""
        callback = partial(self._answered, output)
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    on_delivery=callback,
                    headers=cast(ProducerHeaders, headers),  # list is invariant; bytes are fine
                    timestamp=timestamp,  # 0: now, librdkafka's default
                )
                self._waiting[id(output)] = output
                return
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:  # refused before queueing (too large, invalid)
                error = exc.args[0] if exc.args else KafkaError(KafkaError._INVALID_ARG)
                self._answer(output, error, None)
                return

    def take_all(self) -> list[Output]:
        """Every output still waiting (and none waits any more)."""
        taken, self._waiting = list(self._waiting.values()), {}
        return taken

    def _answered(self, output: Output, err: KafkaError | None, msg: Message | None) -> None:
        if self._waiting.pop(id(output), None) is not None:
            self._answer(output, err, msg)
