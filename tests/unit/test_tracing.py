"""Spans of one micro-batch, asserted with the SDK's in-memory exporter."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Message
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from streamer.observability.tracing import exporter_from_env, provider_from_env
from tests.unit.fakes import TOPIC, avro_raw, make_event, make_message

TRACE_IDS = ["0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"]
PARENTS = ["b7ad6b7169203331", "00f067aa0ba902b7"]


def _traced(
    build: Any, *, traced: bool = True
) -> tuple[Any, Any, InMemorySpanExporter, list[Message]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    messages = [
        make_message(
            0,
            avro_raw(make_event(0)),
            headers=[("traceparent", f"00-{TRACE_IDS[0]}-{PARENTS[0]}-01".encode())],
        ),
        make_message(1, b"poison"),
        make_message(
            2,
            avro_raw(make_event(2)),
            partition=1,
            headers=[("traceparent", f"00-{TRACE_IDS[1]}-{PARENTS[1]}-01".encode())],
        ),
        make_message(
            3, avro_raw(make_event(3))
        ),  # no upstream context: no link, a new trace for its send span
    ]
    tracer = provider.get_tracer("test") if traced else None
    pipeline, _consumer, producer = build([messages], tracer=tracer)
    return pipeline, producer, exporter, messages


@pytest.mark.parametrize("backlog", [False, True])
def test_batch_span_links_every_traced_message_and_parents_the_stage_spans(
    build: Any, backlog: bool
) -> None:
    """Also for a backlog's full batch, whose reasons and publish stages run during the
    next step: they are its span's children all the same."""
    pipeline, _, exporter, _ = _traced(build)
    pipeline.max_batch_size = 4 if backlog else 500

    pipeline.step()
    pipeline.step()

    spans = exporter.get_finished_spans()
    (batch,) = [s for s in spans if s.name == f"process {TOPIC}"]
    assert batch.kind == SpanKind.CONSUMER
    assert batch.attributes is not None
    assert dict(batch.attributes) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": TOPIC,
        "messaging.consumer.group.name": "g",
        "messaging.batch.message_count": 4,
    }
    links = [
        (
            format(link.context.trace_id, "032x"),
            format(link.context.span_id, "016x"),
            dict(link.attributes or {}),
        )
        for link in batch.links
    ]
    assert links == [
        (
            TRACE_IDS[0],
            PARENTS[0],
            {"messaging.destination.partition.id": "0", "messaging.kafka.offset": 0},
        ),
        (
            TRACE_IDS[1],
            PARENTS[1],
            {"messaging.destination.partition.id": "1", "messaging.kafka.offset": 2},
        ),
    ]
    stages = {
        s.name: s
        for s in spans
        if s.parent is not None and s.parent.span_id == batch.context.span_id
    }
    assert {"decode", "enrich", "score", "reasons", "publish"} <= set(stages)


@pytest.mark.parametrize("backlog", [False, True])
def test_each_output_continues_its_own_input_trace(build: Any, backlog: bool) -> None:
    """Also for a backlog's full batch, published once the next step has begun."""
    pipeline, producer, exporter, _ = _traced(build)
    pipeline.max_batch_size = 4 if backlog else 500

    pipeline.step()
    assert bool(pipeline._pending) == backlog
    pipeline.step()

    sends = {s.context.span_id: s for s in exporter.get_finished_spans() if s.name == "send scored"}
    outputs = [dict(h or []) for t, _, _, h in producer.delivered if t == "scored"]
    assert len(outputs) == 3
    assert len(sends) == 2  # the third input had no trace context: nothing to continue
    assert "traceparent" not in outputs[2]
    for headers, trace_id, parent in zip(outputs[:2], TRACE_IDS, PARENTS, strict=True):
        _, out_trace, out_span, flags = headers["traceparent"].decode().split("-")
        send = sends[int(out_span, 16)]
        assert send.kind == SpanKind.PRODUCER
        assert send.attributes is not None
        assert send.attributes["messaging.destination.name"] == "scored"
        assert out_trace == trace_id  # the fraud service joins the upstream trace
        assert send.parent is not None
        assert format(send.parent.span_id, "016x") == parent
        assert int(flags, 16) & 1  # sampled


def test_unsampled_upstream_gets_no_spans_and_its_context_passes_through(build: Any) -> None:
    unsampled = f"00-{TRACE_IDS[0]}-{PARENTS[0]}-00".encode()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pipeline, _, producer = build(
        [[make_message(0, avro_raw(make_event(0)), headers=[("traceparent", unsampled)])]],
        tracer=provider.get_tracer("test"),
    )

    pipeline.step()

    (headers,) = [dict(h) for t, _, _, h in producer.delivered if t == "scored"]
    assert headers["traceparent"] == unsampled
    spans = exporter.get_finished_spans()
    assert not [s for s in spans if s.name.startswith("send")]
    (batch,) = [s for s in spans if s.name.startswith("process")]
    assert list(batch.links) == []


def test_without_an_exporter_there_is_no_provider() -> None:
    assert provider_from_env({}) is None
    assert (
        exporter_from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"}
        )
        is None
    )
    assert (
        exporter_from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"}
        )
        is None
    )
    http = exporter_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    )
    grpc = exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317"})
    assert type(http).__module__.endswith("http.trace_exporter")
    assert type(grpc).__module__.endswith("grpc.trace_exporter")


def test_tracing_off_passes_the_upstream_traceparent_through(build: Any) -> None:
    pipeline, producer, exporter, _ = _traced(build, traced=False)
    pipeline.step()
    headers = [dict(h or []) for t, _, _, h in producer.delivered if t == "scored"]
    assert headers[0]["traceparent"] == f"00-{TRACE_IDS[0]}-{PARENTS[0]}-01".encode()
    assert exporter.get_finished_spans() == ()
