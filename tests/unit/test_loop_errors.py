"""Consumer errors the loop must not swallow: a fenced static member stops with one line."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from streamer.errors import ConfigError
from streamer.kafka.loop import _consumer_error

FENCED = (
    "Fatal error: Broker: Static consumer fenced by other consumer with same "
    "group.instance.id: Fatal consumer error"
)


def test_a_fenced_static_member_is_a_configuration_error_naming_the_setting() -> None:
    # As librdkafka reports it: code _FATAL, fatal() False.
    with pytest.raises(ConfigError, match="STREAMER_GROUP_INSTANCE_ID"):
        _consumer_error(KafkaError(KafkaError._FATAL, FENCED))


def test_other_fatal_errors_stop_the_loop() -> None:
    with pytest.raises(KafkaException):
        _consumer_error(KafkaError(KafkaError._FATAL, "Fatal error: something else"))


def test_transient_errors_and_partition_eof_do_not() -> None:
    _consumer_error(KafkaError(KafkaError._PARTITION_EOF))
    _consumer_error(KafkaError(KafkaError._TRANSPORT, "broker down"))
