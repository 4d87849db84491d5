"""The Open Inference Protocol (/v2 REST and gRPC) against a real ``streamer serve``.

The promise: the clients people already use (tritonclient's HTTP and gRPC clients, and a
plain JSON client written from the protocol's text) discover the model, send N transactions
as numpy tensors, and get for every row the score and decision /v1 gives the same event;
a malformed request is refused naming the input, an unknown version is a 404; a row that
breaks a validation rule keeps its place as REJECTED with the dead-letter class.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from confluent_kafka import Consumer, TopicPartition
from tritonclient.utils import InferenceServerException

from streamer.dev import synth
from streamer.dev.devstack.processes import free_port
from streamer.features.loader import load_feature_set, synthetic_features
from streamer.serve.oip.outputs import OUTPUTS
from streamer.serve.oip.tensors import input_fields
from tests.integration.conftest import Bed
from tests.integration.serve_proc import Served, serving
from tests.integration.streamer_proc import decode_single_object, plain_schema

SEED, CARDS, MERCHANTS, ROWS = 11, 600, 80, 500
MODEL = "fraud-gbt"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@dataclass
class V2Server:
    served: Served
    grpc_url: str
    events: list[dict[str, Any]]


def _events(n: int, now_ms: int) -> list[dict[str, Any]]:
    """Synthetic events of the loaded population; some unknown cards, some invalid rows.
    Nullable fields are filled (a tensor has no per-row null), the same for /v1 and /v2."""
    pop = synth.make_population(SEED, n_cards=CARDS, n_merchants=MERCHANTS)
    events = synth.generate_events(pop, n, seed=7, start_ms=now_ms - 120_000, rate_per_s=50.0)
    for i, event in enumerate(events):
        if i % 97 == 0:
            event["card_id"] = f"card-unknown-{i}"
        if i % 151 == 0:
            event["amount_minor"] = 0  # AmountNotPositive
        if i % 173 == 0:
            event["currency"] = "XXQ"  # not a currency
        for field in input_fields():
            if event[field.name] is None:
                event[field.name] = "" if field.datatype == "BYTES" else False
    return events


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[V2Server]:
    tmp = tmp_path_factory.mktemp("v2")
    prefix = f"v2-{time.monotonic_ns()}:"
    now_ms = int(time.time() * 1000)
    client = redis.Redis.from_url(redis_url)
    load_feature_set(
        client, prefix, synthetic_features(SEED, now_ms, n_cards=CARDS, n_merchants=MERCHANTS)
    )
    grpc_port = free_port()
    try:
        with serving(
            tmp,
            "--max-request-events",
            str(ROWS),
            redis_url=redis_url,
            redis_key_prefix=prefix,
            serve_grpc_port=str(grpc_port),
        ) as served:
            yield V2Server(served, f"127.0.0.1:{grpc_port}", _events(ROWS, now_ms))
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def _numpy_columns(events: list[dict[str, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    columns: dict[str, np.ndarray[Any, Any]] = {}
    for field in input_fields():
        values = [e[field.name] for e in events]
        if field.datatype == "BYTES":
            columns[field.name] = np.array([v.encode() for v in values], dtype=np.object_)
        elif field.datatype == "BOOL":
            columns[field.name] = np.array(values, dtype=np.bool_)
        else:
            columns[field.name] = np.array(values, dtype=np.int64)
    columns["mcc"] = columns["mcc"].astype(np.int32)
    return columns


def _inputs(module: Any, events: list[dict[str, Any]]) -> list[Any]:
    inputs = []
    for name, array in _numpy_columns(events).items():
        datatype = {"O": "BYTES", "b": "BOOL", "i": "INT32" if array.itemsize == 4 else "INT64"}
        tensor = module.InferInput(name, list(array.shape), datatype[array.dtype.kind])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _v1(server: V2Server, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with server.served.client() as client:
        response = client.post("/v1/score:batch", json={"events": events})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _assert_same_as_v1(v1: list[dict[str, Any]], scores: Any, decisions: Any, classes: Any) -> None:
    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    for row, expected in enumerate(v1):
        if expected["status"] == "scored":
            assert abs(float(scores[row]) - expected["score"]) <= 1e-9, row
            assert text(decisions[row]) == expected["decision"], row
            assert text(classes[row]) == "", row
        else:
            assert np.isnan(float(scores[row])), row
            assert text(decisions[row]) == "REJECTED", row
            assert text(classes[row]) == expected["error_class"], row


def test_tritonclient_http_discovers_the_model_and_scores_500_rows_as_v1_does(
    server: V2Server,
) -> None:
    with closing(
        httpclient.InferenceServerClient(server.served.url.removeprefix("http://"))
    ) as client:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(MODEL)
        meta = client.get_model_metadata(MODEL)
        assert [i["name"] for i in meta["inputs"]] == [f.name for f in input_fields()]
        assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == list(OUTPUTS)
        assert "champion" in meta["versions"]

        result = client.infer(MODEL, _inputs(httpclient, server.events), request_id="req-1")
        v1 = _v1(server, server.events)
        _assert_same_as_v1(
            v1,
            result.as_numpy("score"),
            result.as_numpy("decision"),
            result.as_numpy("error_class"),
        )
        assert result.get_response()["id"] == "req-1"
        assert {r["status"] for r in v1} == {"scored", "rejected"}

        # Only the outputs asked for, JSON (not binary) when asked so; an alias is a version.
        wanted = [httpclient.InferRequestedOutput("decision", binary_data=False)]
        picked = client.infer(
            MODEL, _inputs(httpclient, server.events[:3]), model_version="champion", outputs=wanted
        )
        assert [o["name"] for o in picked.get_response()["outputs"]] == ["decision"]
        assert list(picked.as_numpy("decision")) == [r.get("decision", "REJECTED") for r in v1[:3]]


def test_tritonclient_grpc_gives_the_same_answers(server: V2Server) -> None:
    with closing(grpcclient.InferenceServerClient(server.grpc_url)) as client:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(MODEL, "champion")
        meta = client.get_model_metadata(MODEL, as_json=True)
        assert [i["name"] for i in meta["inputs"]] == [f.name for f in input_fields()]
        assert client.get_server_metadata(as_json=True)["name"] == "streamer"

        result = client.infer(MODEL, _inputs(grpcclient, server.events), request_id="g-1")
        _assert_same_as_v1(
            _v1(server, server.events),
            result.as_numpy("score"),
            result.as_numpy("decision"),
            result.as_numpy("error_class"),
        )
        assert result.get_response().id == "g-1"
        picked = client.infer(
            MODEL,
            _inputs(grpcclient, server.events[:2]),
            outputs=[grpcclient.InferRequestedOutput("score")],
        )
        assert [o.name for o in picked.get_response().outputs] == ["score"]
    with server.served.client() as http:
        metrics = http.get("/metrics").text
    assert re.search(r'streamer_serve_requests_total\{[^}]*protocol="v2-grpc"', metrics)


def test_plain_json_client_from_the_protocol_text(server: V2Server) -> None:
    """An independent client: the protocol's JSON shape by hand, typed ``data`` lists."""
    events = server.events[:50]
    inputs = [
        {
            "name": f.name,
            "datatype": f.datatype,
            "shape": [len(events)],
            "data": [e[f.name] for e in events],
        }
        for f in input_fields()
    ]
    with server.served.client() as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2").json()["name"] == "streamer"
        response = client.post(f"/v2/models/{MODEL}/infer", json={"id": "plain", "inputs": inputs})
        metrics = client.get("/metrics").text
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "plain"
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    scores = [np.nan if s is None else s for s in outputs["score"]]
    _assert_same_as_v1(_v1(server, events), scores, outputs["decision"], outputs["error_class"])
    assert re.search(r'streamer_serve_requests_total\{[^}]*protocol="v2-rest"', metrics)


def _http_error(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_malformed_requests_are_refused_naming_the_input(server: V2Server) -> None:
    with (
        closing(
            httpclient.InferenceServerClient(server.served.url.removeprefix("http://"))
        ) as http,
        closing(grpcclient.InferenceServerClient(server.grpc_url)) as rpc,
    ):
        for module, client in ((httpclient, http), (grpcclient, rpc)):
            inputs = _inputs(module, server.events[:4])
            wrong = module.InferInput("mcc", [4], "FP32")
            wrong.set_data_from_numpy(np.array([5411.0] * 4, dtype=np.float32))
            inputs = [wrong if i.name() == "mcc" else i for i in inputs]
            error = _http_error(lambda: client.infer(MODEL, inputs))  # noqa: B023
            assert "'mcc'" in error.message()
            assert "FP32" in error.message()
            assert error.status() in ("400", "StatusCode.INVALID_ARGUMENT")

            short = _inputs(module, server.events[:4])
            short[3] = _inputs(module, server.events[:3])[3]
            error = _http_error(lambda: client.infer(MODEL, short))  # noqa: B023
            assert f"'{short[3].name()}'" in error.message()
            assert "shape" in error.message()

            error = _http_error(
                lambda: client.infer(MODEL, _inputs(module, server.events[:1]), model_version="9")  # noqa: B023
            )
            assert error.status() in ("404", "StatusCode.NOT_FOUND")

        with httpx.Client(base_url=server.served.url) as client:
            missing = client.get(f"/v2/models/{MODEL}/versions/9")
            assert missing.status_code == 404
            assert "not loaded" in missing.json()["error"]
            garbage = client.post(f"/v2/models/{MODEL}/infer", content=b"{not json")
            assert garbage.status_code == 400
            assert "error" in garbage.json()
        assert http.is_server_live()  # still serving


def test_the_docs_example_runs_verbatim(server: V2Server) -> None:
    """The tritonclient example of docs/api.md's /v2 section, run as written against this
    server (its address substituted for localhost:8080)."""
    text = DOCS.read_text()
    section = text[text.index("## /v2 (Open Inference Protocol)") :]
    sample = re.search(r"```python\n(.*?)```", section, re.S)
    assert sample is not None
    code = sample.group(1).replace("localhost:8080", server.served.url.removeprefix("http://"))
    namespace: dict[str, Any] = {}
    try:
        exec(compile(code, str(DOCS), "exec"), namespace)
        assert namespace["result"].as_numpy("decision").shape == (1,)
    finally:
        if "client" in namespace:
            namespace["client"].close()


def _topic_records(bootstrap: str, topic: str) -> list[tuple[str, dict[str, bytes]]]:
    """(transaction id, headers) of every record on ``topic``, read to its end."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}-read", "enable.auto.commit": False}
    )
    try:
        _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, 0)])
        schema, out, read = plain_schema("scored_event"), [], 0
        deadline = time.monotonic() + 60
        while read < end and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            read = (message.offset() or 0) + 1
            record = decode_single_object(message.value() or b"", schema)
            headers = {k: v or b"" for k, v in message.headers() or []}
            out.append((record["transaction_id"], headers))
        assert read == end, f"read {read} of {end} records"
        return out
    finally:
        consumer.close()


def test_v2_keeps_v1s_api_keys_and_publishes_what_it_scored_with_the_callers_trace(
    bed: Bed,
) -> None:
    """--publish and --api-keys-file over both transports: no key, no answer (401,
    UNAUTHENTICATED); with it, every scored row is on the audit topic once, no rejected
    row, and a gRPC caller's traceparent metadata travels with its records."""
    key = "0123456789abcdef0123"
    (bed.tmp / "keys").write_text(f"{key}\n")
    topic = bed.make_topic("scored-v2", partitions=1)
    now_ms = int(time.time() * 1000)
    load_feature_set(
        bed.redis,
        bed.prefix,
        synthetic_features(SEED, now_ms, n_cards=CARDS, n_merchants=MERCHANTS),
    )
    events = _events(200, now_ms)
    rest_rows, rpc_rows = events[:120], events[120:]
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    grpc_port = free_port()
    with (
        ExitStack() as stack,
        serving(
            bed.tmp,
            "--publish",
            "--api-keys-file",
            str(bed.tmp / "keys"),
            "--max-request-events",
            "200",
            redis_url=bed.redis_url,
            redis_key_prefix=bed.prefix,
            kafka_bootstrap_servers=bed.kafka,
            output_topic=topic,
            serve_grpc_port=str(grpc_port),
        ) as served,
    ):
        http = stack.enter_context(
            closing(httpclient.InferenceServerClient(served.url.removeprefix("http://")))
        )
        rpc = stack.enter_context(
            closing(grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}"))
        )
        assert (
            _http_error(lambda: http.infer(MODEL, _inputs(httpclient, rest_rows))).status() == "401"
        )
        refused = _http_error(lambda: rpc.infer(MODEL, _inputs(grpcclient, rpc_rows)))
        assert refused.status() == "StatusCode.UNAUTHENTICATED"
        rest = http.infer(MODEL, _inputs(httpclient, rest_rows), headers={"x-api-key": key})
        meta = {"authorization": f"Bearer {key}", "traceparent": parent}
        grpc_result = rpc.infer(MODEL, _inputs(grpcclient, rpc_rows), headers=meta)
    scored = []
    for rows, result in ((rest_rows, rest), (rpc_rows, grpc_result)):
        decisions = [d.decode() for d in result.as_numpy("decision")]
        scored += [
            r["transaction_id"] for r, d in zip(rows, decisions, strict=True) if d != "REJECTED"
        ]
        assert "REJECTED" in decisions  # the invalid rows of _events are in both halves
    published = _topic_records(bed.kafka, topic)
    assert sorted(tid for tid, _ in published) == sorted(scored)
    rpc_ids = {r["transaction_id"] for r in rpc_rows}
    traced = [h.get("traceparent") for tid, h in published if tid in rpc_ids]
    assert traced
    assert set(traced) == {parent.encode()}
