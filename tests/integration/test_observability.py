"""What an SRE sees, on a real streamer process: OTLP traces, /metrics, /healthz and /readyz."""

from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from confluent_kafka import Producer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from streamer.dev.devstack.processes import free_port
from streamer.dev.devstack.redis import RedisServer
from streamer.model.registry import resolve
from tests.integration.conftest import Bed
from tests.integration.streamer_proc import (
    REPO,
    decode_single_object,
    http_get,
    load_synthetic_features,
    plain_schema,
    read_all,
    start_streamer,
    stop,
    wait_caught_up,
    wait_until,
)

TRACE_ID = "5b8efff798038103d269b633813fc60c"


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: decodes each POSTed protobuf ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend(scope_spans.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def _produce(bootstrap: str, topic: str, valid: int, poison: int) -> None:
    from streamer.codec.schemas import transaction_schema
    from streamer.codec.wire import make_encoder
    from streamer.dev.synth import generate_events, make_population

    encoder = make_encoder("single-object", schema=transaction_schema())
    now = time.time_ns() // 1_000_000
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, event in enumerate(
        generate_events(make_population(7, 3000, 300), valid, seed=3, start_ms=now)
    ):
        header = f"00-{TRACE_ID}-{i + 1:016x}-01".encode()
        producer.produce(
            topic,
            encoder.encode({**event, "event_time": now}),
            event["card_id"],
            headers=[("traceparent", header)],
        )
    for _ in range(poison):
        producer.produce(topic, b"not avro at all", b"poison")
    producer.flush(30)


def test_traces_over_otlp_http_and_metrics_match_what_was_sent(
    bed: Bed, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = OtlpReceiver()
    load_synthetic_features(bed.redis_url, bed.prefix)
    _produce(bed.kafka, bed.topics["input_topic"], valid=300, poison=7)
    port = free_port()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "streamer-under-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    proc = start_streamer(bed.tmp / "s.log", **{**bed.settings, "metrics_port": str(port)})
    try:
        wait_caught_up(bed.kafka, bed.group, bed.topics["input_topic"], 120, proc)
        wait_until(
            lambda: _total(_metrics(port), "streamer_end_to_end_latency_seconds_count") >= 300,
            30,
            "latencies recorded",
            proc,
        )
        wait_until(
            lambda: sum(k[0] == "streamer_consumer_lag" for k in _metrics(port)) == 3,
            10,
            "lag of every partition",
            proc,
        )
        samples = _metrics(port)
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        status, body = http_get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200
        assert json.loads(body)["model"] == "loaded"
    finally:
        assert stop(proc) == 0, (bed.tmp / "s.log").read_text()[-3000:]

    # /metrics: counters agree with what was sent.
    assert samples["streamer_events_consumed_total", ()] == 307
    assert _total(samples, "streamer_events_scored_total") == 300
    assert (
        samples[
            "streamer_events_dead_lettered_total", (("reason", "BadMagicByte"), ("stage", "decode"))
        ]
        == 7
    )
    assert samples["streamer_feature_status_total", (("status", "COMPLETE"),)] == 300
    assert samples["streamer_end_to_end_latency_seconds_count", ()] == 300
    default = resolve("fraud-gbt@champion", REPO / "models").parent.name  # the default model
    assert samples["streamer_score_count", (("model_version", default),)] == 300
    assert samples["streamer_model_info", (("name", "fraud-gbt"), ("version", default))] == 1
    assert samples["streamer_events_in_flight", ()] == 0
    assert _total(samples, "streamer_batch_size_sum") == 307
    lags = {k: v for k, v in samples.items() if k[0] == "streamer_consumer_lag"}
    assert len(lags) == 3, lags
    assert set(lags.values()) == {0}
    hits = samples["streamer_feature_lookups_total", (("entity", "card"), ("result", "hit"))]
    assert hits > 0
    assert (
        samples["streamer_redis_breaker_state", (("streamer_redis_breaker_state", "closed"),)] == 1
    )

    # Traces: a process span per batch links each traced message; sends join the upstream trace.
    wait_until(
        lambda: sum(s.name == f"send {bed.topics['output_topic']}" for s in receiver.spans) >= 300,
        20,
        "spans",
    )
    process = [s for s in receiver.spans if s.name == f"process {bed.topics['input_topic']}"]
    assert process
    assert sum(len(s.links) for s in process) == 300
    link = process[0].links[0]
    assert link.trace_id.hex() == TRACE_ID
    assert {a.key for a in link.attributes} == {
        "messaging.destination.partition.id",
        "messaging.kafka.offset",
    }
    attrs = {a.key: a.value for a in process[0].attributes}
    assert attrs["messaging.system"].string_value == "kafka"
    assert attrs["messaging.consumer.group.name"].string_value == bed.group
    assert attrs["messaging.batch.message_count"].int_value >= 1
    children = {s.name for s in receiver.spans if s.parent_span_id == process[0].span_id}
    assert {"decode", "enrich", "score", "publish"} <= children
    sends = {s.span_id: s for s in receiver.spans if s.name == f"send {bed.topics['output_topic']}"}
    assert {s.trace_id.hex() for s in sends.values()} == {TRACE_ID}

    outputs = read_all(bed.kafka, bed.topics["output_topic"], 300)
    for msg in outputs:
        _, trace_id, span_id, _ = dict(msg.headers())["traceparent"].decode().split("-")
        assert trace_id == TRACE_ID
        assert bytes.fromhex(span_id) in sends  # the fraud service's parent is our send span
    record = decode_single_object(outputs[0].value(), plain_schema("scored_event"))
    assert record["model_name"] == "fraud-gbt"


def test_readyz_reports_a_missing_model_and_a_degraded_redis(
    bed: Bed, own_redis: RedisServer
) -> None:
    models = bed.tmp / "models"
    shutil.copytree(REPO / "models", models, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    port = free_port()
    settings = {
        **bed.settings,
        "redis_url": own_redis.url,
        "redis_key_prefix": "",
        "models_dir": str(models),
        "metrics_port": str(port),
    }
    proc = start_streamer(bed.tmp / "s.log", **settings)
    ready = f"http://127.0.0.1:{port}/readyz"
    try:
        wait_until(
            lambda: (
                http_get(ready)[0] == 200
                and json.loads(http_get(ready)[1])["consumer"] == "assigned"
            ),
            60,
            "ready",
            proc,
        )
        assert json.loads(http_get(ready)[1])["redis"] == "ok"

        own_redis.stop()
        status, body = http_get(ready)
        assert status == 200, "Redis down degrades scoring; the pod stays ready"
        assert json.loads(body)["redis"] == "degraded"
        own_redis.start()
        wait_until(
            lambda: json.loads(http_get(ready)[1])["redis"] == "ok", 10, "redis ok again", proc
        )

        onnx = resolve("fraud-gbt@champion", models)  # the version being served (default)
        onnx.unlink()
        status, body = http_get(ready)
        assert status == 503
        assert json.loads(body)["model"] == "missing"
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200  # alive, just not ready
    finally:
        assert stop(proc) == 0, (bed.tmp / "s.log").read_text()[-3000:]
