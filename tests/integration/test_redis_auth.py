"""Redis AUTH: the password comes from STREAMER_REDIS_PASSWORD and never shows in output."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fastavro
import pytest
import redis

from streamer.dev.devstack.redis import RedisServer
from streamer.dev.synth import generate_events, make_population
from tests.integration.streamer_proc import plain_schema, streamer_env

SECRET = "s3cret-not-for-logs"


@pytest.fixture
def auth_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    redis.Redis(port=server.port).config_set("requirepass", SECRET)
    yield server
    server.stop()


def _streamer(*args: str, password: str | None) -> subprocess.CompletedProcess[str]:
    env = streamer_env()
    if password is not None:
        env["STREAMER_REDIS_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_features_load_and_score_file_authenticate(auth_redis: RedisServer, tmp_path: Path) -> None:
    load = [
        "features",
        "load",
        "--synthetic",
        "--redis-url",
        auth_redis.url,
        "--cards",
        "300",
        "--merchants",
        "30",
    ]
    denied = _streamer(*load, password=None)
    assert denied.returncode == 3
    assert denied.stderr.startswith("streamer: ")

    loaded = _streamer(*load, password=SECRET)
    assert loaded.returncode == 0, loaded.stderr
    assert redis.Redis(port=auth_redis.port, password=SECRET).dbsize() == 330

    source = tmp_path / "in.avro"
    with source.open("wb") as out:
        events = generate_events(
            make_population(7, 300, 30), 100, seed=2, start_ms=1_764_000_000_000
        )
        fastavro.writer(out, plain_schema("transaction_event"), events)
    scored = _streamer(
        "score-file",
        str(source),
        str(tmp_path / "out.avro"),
        "--redis-url",
        auth_redis.url,
        password=SECRET,
    )
    assert scored.returncode == 0, scored.stderr
    assert "100 scored" in scored.stderr
    assert "0 degraded" in scored.stderr
    for result in (denied, loaded, scored):
        assert SECRET not in result.stdout + result.stderr
