"""What the decoders and encoders share: the wire format names, their magic bytes, the
schema registry they talk to, and the redaction of registry credentials from messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

WireFormat = Literal["confluent", "single-object", "raw"]
CONFLUENT_MAGIC = b"\x00"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"


class SchemaRegistry(Protocol):
    """What the confluent framing needs from a registry (``SchemaRegistryClient`` has it)."""

    def get_schema(self, schema_id: int) -> Any:
        """The schema registered under ``schema_id`` (with ``schema_str``)."""

    def register_schema(self, subject_name: str, schema: Any) -> int:
        """Register ``schema`` under ``subject_name``; return its id."""


@dataclass(frozen=True)
class SerializerOptions:
    """How the confluent framing finds the output schema's id (``codec.confluent``):
    ``auto.register.schemas`` and ``use.latest.version``, as confluent-kafka names them.
    With ``use_latest`` the subject's latest version is used and nothing is registered."""

    auto_register: bool = True
    use_latest: bool = False


_USERINFO = re.compile(r"//[^/@\s]+@")  # credentials in registry URLs must not reach logs


def redact(message: str) -> str:
    """``message`` with the user:password of any URL in it replaced by ``***``."""
    return _USERINFO.sub("//***@", message)
