"""How the loop takes its next micro-batch from the consumer (``kafka.batching`` plans it).

Adaptive: block until one message is there, then take what else is already waiting, with
no wait to fill. Filled: up to a size within a wait. Either way, while outputs are in
flight the wait is split, because the broker's silence is read as acknowledgement only
between polls (``Publisher.poll``): a quiet stream's outputs are settled (latency taken,
inputs made committable) ``settle_after_s`` after they were queued, not a batch wait later.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Message

from streamer.kafka.batching import ConsumePlan
from streamer.kafka.publisher import Publisher


def take(
    consumer: Consumer, publisher: Publisher, plan: ConsumePlan, settle_after_s: float
) -> list[Message]:
    """The next batch as ``plan`` says: adaptive or filled."""
    if not plan.adaptive:
        return filled(consumer, publisher, plan.size, plan.fill_s, settle_after_s)
    head = first(consumer, publisher, plan.idle_s, settle_after_s)
    if head is None:
        return []
    if plan.size == 1:
        return [head]
    return [head, *consumer.consume(plan.size - 1, 0)]


def first(
    consumer: Consumer, publisher: Publisher, wait: float, settle_after_s: float
) -> Message | None:
    """The first message within ``wait`` seconds."""
    if not publisher.unreported or wait <= settle_after_s:
        return consumer.poll(wait)
    deadline = time.monotonic() + wait
    head = consumer.poll(settle_after_s)
    if head is not None:
        return head
    publisher.poll(0)
    return consumer.poll(max(deadline - time.monotonic(), 0.0))


def filled(
    consumer: Consumer, publisher: Publisher, size: int, wait: float, settle_after_s: float
) -> list[Message]:
    """Up to ``size`` messages within ``wait`` seconds; the batch is the same one whether
    or not the wait was split."""
    if not publisher.unreported or wait <= settle_after_s:
        return consumer.consume(size, wait)
    deadline = time.monotonic() + wait
    messages = consumer.consume(size, settle_after_s)
    publisher.poll(0)
    left = deadline - time.monotonic()
    if len(messages) < size and left > 0:
        messages += consumer.consume(size - len(messages), left)
    return messages
