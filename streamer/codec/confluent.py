"""The Confluent serializer options: subject names, auto-registration, the latest version.

Users of confluent-kafka's ``AvroSerializer`` expect three choices, and get them here with
the same meaning:

* ``subject_strategy`` (``subject.name.strategy``): ``topic`` → ``<topic>-value``,
  ``record`` → the record's full name, ``topic_record`` → ``<topic>-<full name>``.
* ``auto_register`` (``auto.register.schemas``): register the schema under the subject on
  first use; off, the schema must already be registered there (a governed registry where
  producers may not register), else ``DependencyError`` naming the subject.
* ``use_latest`` (``use.latest.version``): write with the subject's latest registered
  version, whatever its text: a schema evolved in the registry ahead of this deployment
  (say, one more field with a default) is what the output carries, as long as it can
  hold our records (Avro's resolution rules; its extra fields take their defaults).

Everything happens on first use or in ``prepare`` (a start-up check), never in a
constructor: building the stream makes no network call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol, cast

from streamer.codec.codegen import EncodeFn, encoder_for, reader_for
from streamer.codec.encoding import Encoder
from streamer.codec.framing import CONFLUENT_MAGIC, SchemaRegistry, SerializerOptions, redact
from streamer.codec.schemas import Schema, fingerprint, parse, schema_json, without_logical_types
from streamer.errors import DependencyError

__all__ = ["RegistryEncoder", "SerializerOptions", "SubjectStrategy", "subject_name"]

SubjectStrategy = Literal["topic", "record", "topic_record"]


class _Lookups(Protocol):
    """What auto-registration off and use-latest need beyond ``SchemaRegistry``."""

    def lookup_schema(self, subject_name: str, schema: Any) -> Any: ...

    def get_latest_version(self, subject_name: str) -> Any: ...

    def get_versions(self, subject_name: str) -> list[int]: ...

    def get_version(self, subject_name: str, version: int) -> Any: ...


def subject_name(strategy: SubjectStrategy, topic: str, schema: Schema) -> str:
    """The subject a message value of ``schema`` on ``topic`` is registered under."""
    if strategy == "topic":
        return f"{topic}-value"
    record = str(schema["name"])  # fastavro's parsed schema carries the full name
    if strategy == "record":
        return record
    if strategy == "topic_record":
        return f"{topic}-{record}"
    raise ValueError(f"unknown subject name strategy {strategy!r}; use topic, record, topic_record")


class RegistryEncoder(Encoder):
    """Confluent framing: the schema id comes from the registry on first use (or
    ``prepare``), by registering, looking up, or taking the latest version."""

    def __init__(
        self,
        schema: Schema,
        registry: SchemaRegistry,
        subject: str,
        options: SerializerOptions = SerializerOptions(),  # noqa: B008 - frozen, shared
    ) -> None:
        super().__init__(schema, self._resolve)
        self._schema, self._registry, self._subject = schema, registry, subject
        self._options = options
        self.schema_id: int | None = None

    @property
    def _lookups(self) -> _Lookups:
        return cast(_Lookups, self._registry)  # SchemaRegistryClient has both

    @property
    def subject(self) -> str:
        return self._subject

    def prepare(self) -> None:
        """Find the schema id now: a start-up check, so a missing schema stops start-up
        (``DependencyError``, exit 3) instead of the first batch."""
        if self._header is None:
            self._header = self._resolve()

    def _resolve(self) -> bytes:
        try:
            if self._options.use_latest:
                schema_id = self._latest()
            elif self._options.auto_register:
                schema_id = self._registry.register_schema(self._subject, self._wire_schema())
            else:
                schema_id = self._lookup()
        except DependencyError:
            raise
        except Exception as exc:
            raise DependencyError(
                f"schema registry, subject {self._subject!r}: {_describe(exc)}"
            ) from exc
        self.schema_id = int(schema_id)
        return CONFLUENT_MAGIC + self.schema_id.to_bytes(4, "big")

    def _wire_schema(self) -> Any:
        # Imported on first use: the registry client pulls in an HTTP stack that the raw
        # and single-object framings never need.
        from confluent_kafka.schema_registry import Schema as RegistrySchema

        return RegistrySchema(schema_json(self._schema), "AVRO")

    def _lookup(self) -> int:
        """Our schema's id under the subject. Registries compare the text (Apicurio keeps
        it as registered, docs and whitespace included), so when the exact text is not
        found, the subject's versions are compared by Avro fingerprint (canonical form)."""
        try:
            found = self._lookups.lookup_schema(self._subject, self._wire_schema())
            return int(found.schema_id)
        except Exception as exc:
            if getattr(exc, "http_status_code", None) != 404:
                raise
        schema_id = self._same_schema_id()
        if schema_id is None:
            raise DependencyError(
                f"schema {self._schema['name']} is not registered under subject "
                f"{self._subject!r} and STREAMER_SCHEMA_REGISTRY_AUTO_REGISTER is off: "
                "register it there, or turn auto-registration on"
            )
        return schema_id

    def _same_schema_id(self) -> int | None:
        try:
            versions = self._lookups.get_versions(self._subject)
        except Exception as exc:
            if getattr(exc, "http_status_code", None) == 404:
                return None
            raise
        ours = fingerprint(self._schema)
        for version in sorted(versions, reverse=True):
            registered = self._lookups.get_version(self._subject, version)
            text = registered.schema.schema_str
            if getattr(registered.schema, "schema_type", "AVRO") in (None, "AVRO") and (
                _fingerprint_or_none(text) == ours
            ):
                return int(registered.schema_id)
        return None

    def _latest(self) -> int:
        try:
            latest = self._lookups.get_latest_version(self._subject)
        except Exception as exc:
            if getattr(exc, "http_status_code", None) == 404:
                raise DependencyError(
                    f"subject {self._subject!r} has no registered version and "
                    "STREAMER_SCHEMA_REGISTRY_USE_LATEST is on: register the output schema "
                    "there first, or turn use-latest off"
                ) from None
            raise
        writer = parse(latest.schema.schema_str)
        if fingerprint(writer) != fingerprint(self._schema):
            self._encode = self._encode_as(writer, latest.version)
        return int(latest.schema_id)

    def _encode_as(self, writer: Schema, version: int) -> EncodeFn:
        """Records written with ``writer`` (the subject's latest version), which must be
        able to read ours by Avro's rules; its fields we do not have take their defaults."""
        ours, theirs = without_logical_types(self._schema), without_logical_types(writer)
        try:
            reader_for(ours, theirs)
        except Exception as exc:  # noqa: BLE001 - any refusal means "cannot hold"
            raise DependencyError(
                f"the latest version ({version}) of subject {self._subject!r} cannot hold "
                f"streamer's output records ({_describe(exc)}); register a compatible version "
                "or turn STREAMER_SCHEMA_REGISTRY_USE_LATEST off"
            ) from None
        encode = encoder_for(theirs)
        defaults = _missing_defaults(theirs, ours)
        if not defaults:
            return encode

        def with_defaults(record: Mapping[str, Any], header: bytes) -> bytes:
            return encode({**defaults, **record}, header)

        return with_defaults


def _fingerprint_or_none(text: str) -> bytes | None:
    try:
        return fingerprint(parse(text))
    except Exception:  # noqa: BLE001 - whatever else the subject holds is not ours
        return None


def _missing_defaults(writer: Schema, ours: Schema) -> dict[str, Any]:
    have = {field["name"] for field in ours["fields"]}
    return {f["name"]: f.get("default") for f in writer["fields"] if f["name"] not in have}


def _describe(exc: Exception) -> str:
    status = getattr(exc, "http_status_code", None)
    if status in (401, 403):
        return (
            f"the registry refused authentication (HTTP {status}); check basic.auth.user.info "
            "in STREAMER_SCHEMA_REGISTRY_PROPERTIES"
        )
    return redact(f"{type(exc).__name__}: {exc}")[:300]
