"""OpenTelemetry tracing, by the messaging semantic conventions (current attribute names).

Per micro-batch a ``process <topic>`` CONSUMER span with one link per input message to the
context in its ``traceparent`` header (the link carries the message's partition and
offset), and child spans per stage. Per scored event a ``send <topic>`` PRODUCER span
whose parent is the input's own upstream context, injected into the output's headers, so
the fraud service's spans join the upstream producer's trace.

Configured by the standard ``OTEL_*`` variables. With no exporter configured there is no
tracer at all, and the pipeline skips every tracing call (no cost): the SDK is not even
imported (15 ms of a start-up).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message
from opentelemetry.context import Context, attach, detach, get_current
from opentelemetry.trace import (
    Link,
    SpanKind,
    Tracer,
    get_current_span,
    set_span_in_context,
    use_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from streamer import __version__
from streamer.kafka.headers import read_headers, read_headers_many
from streamer.observability.observer import Headers, Observer

if TYPE_CHECKING:  # the SDK is imported when an exporter is configured, not before
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


def exporter_from_env(environ: dict[str, str] | None = None) -> SpanExporter | None:
    """The OTLP exporter the ``OTEL_*`` variables ask for, or None when tracing is off."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "otlp").lower() in ("none", ""):
        return None
    if not (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).lower()
    if protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

        return Http()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

    return Grpc()


def provider_from_env(
    environ: dict[str, str] | None = None, *, max_links: int = 128
) -> TracerProvider | None:
    """A tracer provider exporting over OTLP, or None when no exporter is configured.

    The sampler comes from ``OTEL_TRACES_SAMPLER``/``_ARG`` (the SDK reads them), the
    service name from ``OTEL_SERVICE_NAME`` (default ``streamer``). ``max_links`` should be
    the largest batch: the SDK's default limit (128) would drop links of bigger batches.
    """
    exporter = exporter_from_env(environ)
    if exporter is None:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME", "streamer"),
            "service.version": __version__,
        }
    )
    provider = TracerProvider(resource=resource, span_limits=SpanLimits(max_links=max_links))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def trace_headers(msg: Message) -> list[tuple[str, bytes]] | None:
    """A message's W3C trace headers (``traceparent``, ``tracestate``), to pass on as they are.

    Read through ``read_headers``: ``Message.headers()`` can hand back a list with a NULL
    slot for a header name that is not UTF-8, and touching it crashes the process.
    """
    return read_headers(msg, _TRACE_HEADERS) or None


def trace_headers_of(messages: Sequence[Message]) -> list[list[tuple[str, bytes]] | None]:
    """``trace_headers`` of each message (the outputs of a batch not traced here)."""
    return read_headers_many(messages, _TRACE_HEADERS)


def upstream_context(msg: Message) -> Context | None:
    """The W3C trace context in a message's headers, when the upstream sampled it.

    streamer follows the upstream's sampling decision: a message without a sampled
    context gets no link and no span (its ``traceparent``, if any, is passed through), so
    tracing costs in proportion to what the upstream chose to trace.
    """
    headers = trace_headers(msg)
    if headers is None:
        return None
    context = _PROPAGATOR.extract({k: v.decode("latin-1") for k, v in headers})
    span_context = get_current_span(context).get_span_context()
    return context if span_context.is_valid and span_context.trace_flags.sampled else None


def batch_links(messages: Sequence[Message], contexts: Sequence[Context | None]) -> list[Link]:
    """One link per message with a (sampled) upstream context, with its partition and offset."""
    return [
        Link(
            get_current_span(ctx).get_span_context(),
            {
                "messaging.destination.partition.id": str(msg.partition()),
                "messaging.kafka.offset": msg.offset() or 0,
            },
        )
        for msg, ctx in zip(messages, contexts, strict=True)
        if ctx is not None
    ]


def process_attributes(topic: str, group: str, count: int) -> dict[str, Any]:
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": topic,
        "messaging.consumer.group.name": group,
        "messaging.batch.message_count": count,
    }


def send_headers(
    tracer: Tracer, topic: str, parent: Context | None, batch_link: Link | None
) -> list[tuple[str, bytes]]:
    """Start and end a ``send <topic>`` span under ``parent``; its context as Kafka headers."""
    span = tracer.start_span(
        f"send {topic}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": topic,
            # No messaging.kafka.message.key: the key is a card token, not for trace backends.
        },
        links=[batch_link] if batch_link else None,
    )
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=set_span_in_context(span))
    span.end()
    return [(k, v.encode()) for k, v in carrier.items()]


class TracingObserver(Observer):
    """A ``process <topic>`` span per batch, child spans per stage, ``send`` spans per output."""

    def __init__(self, tracer: Tracer, input_topic: str, output_topic: str, group: str) -> None:
        self._tracer = tracer
        self._input = input_topic
        self._output = output_topic
        self._group = group
        self._contexts: dict[int, Context | None] = {}
        self._link: Link | None = None

    @contextmanager
    def batch(self, messages: Sequence[Message]) -> Iterator[None]:
        contexts = [upstream_context(m) for m in messages]
        span = self._tracer.start_span(
            f"process {self._input}",
            kind=SpanKind.CONSUMER,
            links=batch_links(messages, contexts),
            attributes=process_attributes(self._input, self._group, len(messages)),
        )
        self._contexts = {id(m): c for m, c in zip(messages, contexts, strict=True)}
        self._link = Link(span.get_span_context())
        try:
            with use_span(span, end_on_exit=True):
                yield
        finally:
            self._contexts, self._link = {}, None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        with self._tracer.start_as_current_span(name):
            yield

    def carry(self) -> object:
        return get_current()  # the batch's ``process`` span is current

    @contextmanager
    def resume(self, carried: object) -> Iterator[None]:
        """The batch's stages after its ``process`` span ended are its children all the
        same (a backlog's batch is explained and published during the next one)."""
        token = attach(carried)  # type: ignore[arg-type]
        try:
            yield
        finally:
            detach(token)

    def output_headers(self, messages: Sequence[Message]) -> list[Headers | None] | None:
        out: list[Headers | None] = []
        for msg in messages:
            upstream = self._contexts.get(id(msg))
            out.append(
                send_headers(self._tracer, self._output, upstream, self._link)
                if upstream is not None
                else trace_headers(msg)
            )
        return out
