"""Sorting a consumed batch: score, dead-letter, or re-read."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, Message

from streamer.errors import Rejection
from streamer.kafka.batch import sort_batch
from tests.unit.fakes import make_event


class TableDecoder:
    """Decodes b"ok:<i>" to an event, b"down" as a registry outage, anything else as poison."""

    def decode(self, payload: bytes | None) -> dict[str, Any] | Rejection:
        if payload is not None and payload.startswith(b"ok:"):
            return make_event(int(payload[3:]))
        if payload == b"down":
            return Rejection("RegistryUnavailable", "registry down")
        return Rejection("NotAvro", "garbage")


def _m(partition: int, offset: int, value: bytes) -> Message:
    return Message(topic="t", partition=partition, offset=offset, value=value)


def test_each_message_lands_in_exactly_one_place() -> None:
    messages = [
        _m(0, 0, b"ok:0"),
        _m(0, 1, b"junk"),
        _m(1, 0, b"ok:1"),
        _m(1, 1, b"down"),  # partition 1 is cut here: re-read from offset 1
        _m(0, 2, b"ok:2"),
        _m(1, 2, b"ok:3"),  # after the cut: not registered, not scored
        Message(error=KafkaError(KafkaError._TRANSPORT)),
    ]

    batch = sort_batch(messages, TableDecoder())

    assert [e["transaction_id"] for e in batch.events] == ["tx-0", "tx-1", "tx-2"]
    assert batch.positions == [(("t", 0), 0), (("t", 1), 0), (("t", 0), 2)]
    assert [m.offset() for m in batch.messages] == [0, 0, 2]
    assert [(m.offset(), r.error_class) for m, r in batch.rejected] == [(1, "NotAvro")]
    assert batch.offsets == {("t", 0): [0, 1, 2], ("t", 1): [0, 1]}
    assert batch.reread == {("t", 1): 1}
    assert [e.code() for e in batch.errors] == [KafkaError._TRANSPORT]
    assert batch.consumed == 5


def test_decoding_does_not_validate() -> None:
    """Validation is the scoring kernel's (tests/unit/test_kernel.py): a decoded event with
    an impossible amount is still an event here."""

    class BadAmount(TableDecoder):
        def decode(self, payload: bytes | None) -> dict[str, Any] | Rejection:
            return make_event(0, amount_minor=-1)

    batch = sort_batch([_m(0, 0, b"x")], BadAmount())

    assert batch.rejected == []
    assert [e["amount_minor"] for e in batch.events] == [-1]
