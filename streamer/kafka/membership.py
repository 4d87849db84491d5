"""The consumer group membership: asked for first, followed by the loop once it exists.

Joining a group takes network round trips in librdkafka's own threads (find the
coordinator, join, sync: about 60 ms on a local broker) and needs nothing but the
consumer. ``streamer run`` therefore subscribes before it imports and builds the rest of
the stream, and the join runs beside that work. Rebalance callbacks fire only inside the
consumer's ``poll``/``consume``/``close``, called from the thread that owns the consumer,
so none can arrive before the loop follows the membership, except on ``close`` after a
failed start-up, when there is nothing to drain.
"""

from __future__ import annotations

import logging
from typing import Protocol

from confluent_kafka import Consumer, TopicPartition

LIBRDKAFKA_LOGGER = "librdkafka"  # where every Kafka client logs (``streamer.clients``)


class RebalanceListener(Protocol):
    """What a follower of the membership does when partitions come and go."""

    def assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None: ...
    def revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None: ...
    def lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None: ...


class Membership:
    """One consumer's subscription to one topic, with its rebalances forwarded."""

    def __init__(self, consumer: Consumer, topic: str) -> None:
        self.consumer, self.topic = consumer, topic
        self._listener: RebalanceListener | None = None
        self._joined = False

    def join(self) -> None:
        """Ask to join the group (once); librdkafka joins in its own threads."""
        if self._joined:
            return
        self.consumer.subscribe(
            [self.topic], on_assign=self._assign, on_revoke=self._revoke, on_lost=self._lost
        )
        self._joined = True

    def abandon(self) -> None:
        """Close the consumer of a start-up that failed. An assignment librdkafka has
        delivered but nobody served yet can make ``close`` wait forever (librdkafka 2.x:
        a start-up refused after the join, e.g. by an unreachable schema registry, hung
        here until killed), so it is served first: one ``poll``, its message (if any)
        left uncommitted for the group. librdkafka's logger is silent meanwhile:
        after a failed start-up the one line saying why is the only output."""
        quiet = logging.getLogger(LIBRDKAFKA_LOGGER)
        was, quiet.disabled = quiet.disabled, True
        try:
            if self._joined:
                self.consumer.poll(0)
            self.consumer.close()
        finally:
            quiet.disabled = was

    def follow(self, listener: RebalanceListener) -> None:
        """From now on, rebalances go to ``listener``."""
        self._listener = listener

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._listener is not None:
            self._listener.assigned(consumer, partitions)

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._listener is not None:
            self._listener.revoked(consumer, partitions)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._listener is not None:
            self._listener.lost(consumer, partitions)
