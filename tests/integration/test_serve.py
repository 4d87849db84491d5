"""``streamer serve`` end to end: real uvicorn on a free port, real HTTP, real Redis.

The promise: the API answers what the stream would (same score and decision for the same
event and features), rejects bad input with the dead-letter classes without falling over,
degrades or refuses when Redis is down as configured, guards the routes with API keys,
publishes its decisions for audit, and finishes in-flight requests on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from streamer.clients import Clients
from streamer.config.loader import load_settings
from streamer.dev import synth
from streamer.dev.devstack.processes import free_port
from streamer.features.loader import load_feature_set, synthetic_features
from streamer.scoring.kernel import ScoringKernel
from streamer.service import feature_cache, load
from streamer.testing import sample_event
from tests.integration.conftest import Bed
from tests.integration.serve_proc import serving
from tests.integration.streamer_proc import REPO, decode_single_object, plain_schema

SEED, CARDS, MERCHANTS = 11, 600, 80
IN_FLIGHT = "streamer_events_in_flight"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _events(n: int, now_ms: int) -> list[dict[str, Any]]:
    """Synthetic events of the loaded population, some with unknown entities or invalid."""
    pop = synth.make_population(SEED, n_cards=CARDS, n_merchants=MERCHANTS)
    events = synth.generate_events(pop, n, seed=5, start_ms=now_ms - 120_000, rate_per_s=50.0)
    for i, event in enumerate(events):
        if i % 97 == 0:
            event["card_id"] = f"card-unknown-{i}"  # PARTIAL / DEFAULTED
        if i % 251 == 0:
            event["amount_minor"] = 0  # AmountNotPositive, as the stream dead-letters it
    return events


async def _post_all(url: str, events: list[dict[str, Any]]) -> dict[str, httpx.Response]:
    """One /v1/score per event, 32 at a time; half send event_time as ISO-8601."""
    limit = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:

        async def one(i: int, event: dict[str, Any]) -> tuple[str, httpx.Response]:
            body = dict(event)
            if i % 2:
                body["event_time"] = _iso(event["event_time"])
            async with limit:
                return event["transaction_id"], await client.post("/v1/score", json=body)

        pairs = await asyncio.gather(*(one(i, e) for i, e in enumerate(events)))
    return dict(pairs)


def test_api_and_stream_give_the_same_answers(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, redis_prefix: str
) -> None:
    now_ms = int(time.time() * 1000)
    features = synthetic_features(SEED, now_ms, n_cards=CARDS, n_merchants=MERCHANTS)
    load_feature_set(redis_client, redis_prefix, features)
    events = _events(3000, now_ms)

    settings = load_settings(
        None, redis_url=redis_url, redis_key_prefix=redis_prefix, models_dir=REPO / "models"
    )
    model = load(settings)
    # The API reads the velocity state and records nothing: the kernel here reads the same
    # (empty) state, so both see the same features for every event.
    kernel = ScoringKernel(model, feature_cache(Clients(settings), model, velocity="read"))
    stream: dict[str, Any] = {}
    for start in range(0, len(events), 500):  # the stream's micro-batches
        chunk = events[start : start + 500]
        scored = kernel.score(chunk, [(0, start + i) for i in range(len(chunk))])
        stream.update({r["transaction_id"]: r for r in scored.records})
        stream.update({chunk[row]["transaction_id"]: rej for row, rej in scored.rejected})

    # A 5 ms window: with none, this one Python client is slower than the server and
    # rarely has two requests queued at once, so batches would seldom merge.
    window = ("--batch-wait-ms", "5")
    with serving(tmp_path, *window, redis_url=redis_url, redis_key_prefix=redis_prefix) as server:
        answers = asyncio.run(_post_all(server.url, events))
        metrics = httpx.get(f"{server.url}/metrics").text

    statuses = {"COMPLETE": 0, "PARTIAL": 0, "DEFAULTED": 0}
    for event in events:
        expected, response = stream[event["transaction_id"]], answers[event["transaction_id"]]
        body = response.json()
        if isinstance(expected, dict):
            assert response.status_code == 200, body
            assert abs(body["score"] - expected["score"]) <= 1e-6
            assert body["decision"] == expected["decision"]
            assert body["feature_status"] == expected["feature_status"]
            assert body["model_version"] == expected["model_version"]
            statuses[body["feature_status"]] += 1
        else:
            assert response.status_code == 422, body
            assert (body["error_class"], body["message"], body["stage"]) == (
                expected.error_class,
                expected.message,
                expected.stage,
            )
    assert statuses["COMPLETE"] > 2500
    assert statuses["PARTIAL"] > 10
    # Concurrent requests shared kernel calls: fewer batches than scored events.
    batches = _sample(metrics, "streamer_batch_size_count")
    assert 0 < batches < len(events) * 0.9


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_bad_requests_get_dead_letter_classes_and_never_crash_the_server(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    event = sample_event(event_time=int(time.time() * 1000))
    with (
        serving(
            tmp_path,
            "--max-body-bytes",
            "4096",
            "--max-request-events",
            "3",
            redis_url=redis_url,
            redis_key_prefix=redis_prefix,
        ) as server,
        server.client() as client,
    ):
        cases: list[tuple[bytes, str]] = [
            (b"", "InvalidJson"),
            (b"\xff\xfe\x00garbage", "InvalidJson"),
            (b"[1, 2, 3]", "InvalidEvent"),
            (b'{"transaction_id": 1}', "InvalidEvent"),
        ]
        for body, error_class in cases:
            response = client.post("/v1/score", content=body)
            assert response.status_code == 422
            assert response.json()["error_class"] == error_class
        for field, value in [("mcc", "5411"), ("amount_minor", 1.5), ("channel", "PIGEON")]:
            response = client.post("/v1/score", json={**event, field: value})
            assert response.status_code == 422
            assert response.json()["message"].startswith(field)
        response = client.post("/v1/score", json={**event, "surprise": 1})
        assert response.status_code == 422
        assert "surprise" in response.json()["message"]
        response = client.post("/v1/score", json={**event, "currency": "XXQ"})
        assert response.json()["error_class"] == "UnknownCurrency"
        assert response.status_code == 422
        # Oversized: declared length, and a chunked body that never declares one.
        big = b'{"transaction_id": "' + b"x" * 5000 + b'"}'
        assert client.post("/v1/score", content=big).status_code == 413
        assert client.post("/v1/score", content=iter([big[:3000], big[3000:]])).status_code == 413
        too_many = {"events": [event] * 4}
        response = client.post("/v1/score:batch", json=too_many)
        assert response.status_code == 422
        assert response.json()["message"].startswith("events")
        mixed = {"events": [event, {**event, "amount_minor": -1}]}
        results = client.post("/v1/score:batch", json=mixed).json()["results"]
        assert [r["status"] for r in results] == ["scored", "rejected"]
        assert results[1]["error_class"] == "AmountNotPositive"
        assert client.post("/v1/score", json=event).status_code == 200  # still serving
        metrics = client.get("/metrics").text
    assert 'http_response_status_code="413"' in metrics
    assert 'streamer_serve_decisions_total{decision="rejected"}' in metrics


def test_redis_down_degrades_or_refuses_as_configured(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    event = sample_event(event_time=int(time.time() * 1000))
    with serving(tmp_path, redis_url=dead, redis_timeout_ms="50") as server:
        response = httpx.post(f"{server.url}/v1/score", json=event)
        assert response.status_code == 200
        assert response.json()["feature_status"] == "DEGRADED"
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 200
        assert ready.json()["redis"] == "degraded"
    with serving(tmp_path, redis_url=dead, redis_timeout_ms="50", redis_required="true") as server:
        response = httpx.post(f"{server.url}/v1/score", json=event)
        assert response.status_code == 503
        assert response.json()["error_class"] == "FeaturesUnavailable"
        assert httpx.get(f"{server.url}/readyz").status_code == 503


def test_api_keys_guard_the_scoring_routes(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# team fraud\n0123456789abcdef0123\nfedcba9876543210fedc\n")
    event = sample_event(event_time=int(time.time() * 1000))
    with serving(
        tmp_path, "--api-keys-file", str(keys), redis_url=redis_url, redis_key_prefix=redis_prefix
    ) as server:
        url = f"{server.url}/v1/score"
        assert httpx.post(url, json=event).status_code == 401
        wrong = {"authorization": "Bearer 0123456789abcdef0124"}
        assert httpx.post(url, json=event, headers=wrong).status_code == 401
        good = {"authorization": "Bearer fedcba9876543210fedc"}
        assert httpx.post(url, json=event, headers=good).status_code == 200
        header = {"x-api-key": "0123456789abcdef0123"}
        assert httpx.post(url, json=event, headers=header).status_code == 200
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # probes stay open
        log = server.log.read_text()
    assert "0123456789abcdef0123" not in log
    assert "fedcba9876543210fedc" not in log


def test_sigterm_finishes_in_flight_requests(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    event = sample_event(event_time=int(time.time() * 1000))
    with serving(
        tmp_path,
        "--batch-wait-ms",
        "5000",  # requests wait in the batcher when the signal arrives
        "--max-batch",
        "1000",
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
    ) as server:

        async def requests_then_sigterm() -> list[int]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
                calls = [
                    asyncio.create_task(
                        client.post("/v1/score", json={**event, "transaction_id": f"t{i}"})
                    )
                    for i in range(20)
                ]
                deadline = time.monotonic() + 4.0
                waiting = 0.0
                while waiting < 20 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                    waiting = _sample((await client.get("/metrics")).text, IN_FLIGHT)
                assert waiting > 0, "no request reached the batcher in time"
                server.proc.send_signal(signal.SIGTERM)
                return [r.status_code for r in await asyncio.gather(*calls)]

        codes = asyncio.run(requests_then_sigterm())
        # uvicorn re-raises the signal once it has finished: a clean stop ends by SIGTERM.
        assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert codes == [200] * 20


def test_publish_sends_each_decision_to_the_scored_topic(bed: Bed, unique: str) -> None:
    from confluent_kafka import Consumer

    topic = bed.make_topic("scored", partitions=1)
    now = int(time.time() * 1000)
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with serving(
        bed.tmp,
        "--publish",
        redis_url=bed.redis_url,
        redis_key_prefix=bed.prefix,
        kafka_bootstrap_servers=bed.kafka,
        output_topic=topic,
    ) as server:
        for i in range(5):
            event = sample_event(event_time=now, transaction_id=f"tx-{unique}-{i}")
            response = httpx.post(
                f"{server.url}/v1/score", json=event, headers={"traceparent": traceparent}
            )
            assert response.status_code == 200
    consumer = Consumer(
        {
            "bootstrap.servers": bed.kafka,
            "group.id": f"g-{unique}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    received: list[Any] = []
    deadline = time.monotonic() + 30
    while len(received) < 5 and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            received.append(msg)
    consumer.close()
    schema = plain_schema("scored_event")
    records = [decode_single_object(m.value(), schema) for m in received]
    assert sorted(r["transaction_id"] for r in records) == [f"tx-{unique}-{i}" for i in range(5)]
    assert all(m.key() == b"card-000001" for m in received)
    assert all(dict(m.headers())["traceparent"] == traceparent.encode() for m in received)
