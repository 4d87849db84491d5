"""Creating topics idempotently: what exists is kept (and said so), what is missing is made.

An existing topic is never altered (partitions cannot shrink, and changing a live topic is
an operator's decision), but a difference from what was asked is said, so a topic made
earlier with one partition does not pass for the six asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streamer.clients import ClientErrors
from streamer.errors import DependencyError


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    retention_hours: float = 0.0  # 0: the broker's default

    def new_topic(self) -> NewTopic:
        config = {}
        if self.retention_hours:
            config["retention.ms"] = str(int(self.retention_hours * 3_600_000))
        return NewTopic(self.name, self.partitions, self.replication, config=config)


def create_topics(
    admin: AdminClient,
    specs: Sequence[TopicSpec],
    *,
    errors: ClientErrors | None = None,
    timeout: float = 15.0,
) -> dict[str, str]:
    """Create each topic unless it exists; returns ``{name: "created" | "exists…"}``.

    An existing topic whose partition count differs is reported as
    ``"exists with N partitions (asked for M)"``.
    """
    by_name = {s.name: s for s in specs}
    futures = admin.create_topics(
        [s.new_topic() for s in specs], operation_timeout=timeout, request_timeout=timeout
    )
    outcome: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            outcome[name] = "created"
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                outcome[name] = _existing(admin, by_name[name], timeout)
                continue
            auth = errors.authentication() if errors is not None else None
            raise DependencyError(f"cannot create topic {name!r}: {auth or exc}") from None
        except TimeoutError:
            raise DependencyError(
                f"cannot create topic {name!r}: no answer within {timeout:.0f}s; check "
                "STREAMER_KAFKA_BOOTSTRAP_SERVERS"
            ) from None
    return outcome


def _existing(admin: AdminClient, spec: TopicSpec, timeout: float) -> str:
    """``exists``, or how the existing topic differs from ``spec``."""
    try:
        topic = admin.list_topics(spec.name, timeout=timeout).topics.get(spec.name)
    except KafkaException:
        return "exists"
    have = len(topic.partitions) if topic is not None else spec.partitions
    if have != spec.partitions:
        return f"exists with {have} partitions (asked for {spec.partitions})"
    return "exists"
