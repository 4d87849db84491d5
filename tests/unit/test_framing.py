"""What the framings share: magic bytes from the wire-format specifications, and the
redaction that keeps registry credentials out of every message."""

from __future__ import annotations

import pytest

from streamer.codec.framing import (
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_MAGIC,
    SerializerOptions,
    redact,
)


def test_magic_bytes_are_the_specifications() -> None:
    assert CONFLUENT_MAGIC == b"\x00"  # Confluent wire format: magic 0, then a 4-byte id
    assert SINGLE_OBJECT_MAGIC == b"\xc3\x01"  # Avro single-object encoding header


def test_serializer_options_default_to_confluent_kafkas_defaults() -> None:
    assert SerializerOptions() == SerializerOptions(auto_register=True, use_latest=False)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("GET https://user:s3cret@registry:8081/schemas", "GET https://***@registry:8081/schemas"),
        ("http://u@h/ and http://a:b@k/", "http://***@h/ and http://***@k/"),
        ("https://registry:8081/subjects", "https://registry:8081/subjects"),
        ("no url here: a@b", "no url here: a@b"),
        ("http://two words@host/", "http://two words@host/"),  # not a URL's userinfo
        ("", ""),
    ],
)
def test_redact_hides_userinfo_and_nothing_else(message: str, expected: str) -> None:
    assert redact(message) == expected
    assert "s3cret" not in redact(message)
