from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streamer.kafka.transactions import (
    FatalTransactionError,
    Transactions,
    batch_start,
    commit_offsets,
)


def test_commit_one_past_each_partitions_last_message_unless_it_must_be_reread() -> None:
    consumed = {("t", 0): [5, 6, 9], ("t", 1): [0, 1, 2], ("t", 2): []}
    assert commit_offsets(consumed, {}) == {("t", 0): 10, ("t", 1): 3}
    assert commit_offsets(consumed, {("t", 1): 1}) == {("t", 0): 10, ("t", 1): 1}
    assert batch_start(consumed) == {("t", 0): 5, ("t", 1): 0}


class FencedProducer:
    """A transactional producer after a newer instance fenced it (librdkafka's errors)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _fenced(self, step: str) -> None:
        self.calls.append(step)
        error = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
        raise KafkaException(error)

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self._fenced("send_offsets")

    def commit_transaction(self, *args: Any) -> None:
        self._fenced("commit")

    def abort_transaction(self, *args: Any) -> None:
        self._fenced("abort")


def test_a_fenced_producer_stops_the_stream_saying_who_took_over_without_retrying() -> None:
    producer = FencedProducer()
    transactions = Transactions(producer)  # type: ignore[arg-type]
    with pytest.raises(FatalTransactionError, match="same STREAMER_TRANSACTIONAL_ID") as raised:
        transactions.commit({("t", 0): 5}, "group-metadata")
    assert "nothing of it is visible" in str(raised.value)
    assert raised.value.exit_code == 1
    with pytest.raises(FatalTransactionError):
        transactions.abort()
    assert producer.calls == ["send_offsets", "abort"]
    assert (transactions.committed, transactions.aborted) == (0, 0)
