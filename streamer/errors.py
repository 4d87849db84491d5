"""The exception tree, and the value that carries a per-record failure.

    StreamerError                 anything that stops the process, with what to do about it
    ├── ConfigError               a setting is missing or invalid (exit code 2)
    ├── DependencyError           a broker, topic, Redis or schema registry is unavailable (exit 3)
    └── ModelError                a model file or its metadata is missing or does not match (exit 2)

Per-record failures are not exceptions: they are ``Rejection`` values that the pipeline
routes to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Stage = Literal["decode", "validate", "enrich", "score", "publish"]


class StreamerError(Exception):
    """Base of every error that stops streamer; the message says what to change."""

    exit_code = 1


class ConfigError(StreamerError):
    """A setting is missing or invalid. The message names the setting."""

    exit_code = 2


class DependencyError(StreamerError):
    """A service streamer needs (Kafka, a topic, Redis, the schema registry) is unavailable."""

    exit_code = 3


class ModelError(StreamerError):
    """A model cannot be used: missing, hash mismatch, or signature not matching its metadata."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one record cannot be scored; it goes to the dead-letter topic with these fields.

    ``error_class`` is a short, stable name (``NotAvro``, ``Truncated``, ``UnknownSchemaId``…)
    that operators filter and count by; ``message`` is for humans.
    """

    error_class: str
    message: str
    stage: Stage = "decode"
