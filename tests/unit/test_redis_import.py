"""redis imported without OpenTelemetry's metrics SDK, which stays importable for others."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_first_import_of_redis_leaves_the_metrics_sdk_out_and_the_finder_goes() -> None:
    out = _run(
        "import sys\n"
        "import streamer.features\n"
        "print('redis' in sys.modules, end=' ')\n"  # the package alone imports no redis
        "import streamer.features.cache\n"
        "finders = [type(f).__name__ for f in sys.meta_path]\n"
        "print('redis' in sys.modules, 'opentelemetry.sdk.metrics' in sys.modules,\n"
        "      '_FirstRedisImport' in finders)\n"
    )
    assert out == "False True False False"


def test_the_metrics_sdk_imports_as_usual_afterwards_and_redis_works() -> None:
    out = _run(
        "import streamer.features.cache, redis\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "client = redis.Redis(host='127.0.0.1', port=1, socket_connect_timeout=0.2)\n"
        "try:\n"
        "    client.ping()\n"
        "except redis.ConnectionError:\n"
        "    print(MeterProvider.__name__, 'refused')\n"
    )
    assert out == "MeterProvider refused"


@pytest.mark.parametrize("first", ["redis", "opentelemetry.sdk.metrics"])
def test_an_earlier_import_is_left_as_it_is(first: str) -> None:
    out = _run(
        f"import {first}\n"
        "import sys\n"
        "import streamer.features\n"
        "import redis.observability.providers as providers\n"
        "print(providers.OTEL_AVAILABLE, 'opentelemetry.sdk.metrics' in sys.modules)\n"
    )
    assert out == "True True"  # redis as it would be without streamer
