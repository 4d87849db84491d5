"""The scoring API's OpenAPI document is a contract, fuzzed against a real server.

Schemathesis reads ``/openapi.json`` from a real ``streamer serve --publish`` (real Redis,
real Kafka) and runs every operation the document lists (so routes added later are fuzzed
with no change here) through all its phases and all its checks: a request the document
calls valid is accepted, one it calls invalid is refused, every answer has a documented
status, media type, headers and body, no 5xx. ``positive_data_acceptance`` is replaced by
``openapi_checks.valid_requests_are_accepted``, which excuses only the rule no static schema
can state and also looks inside each batch's results.

The same run proves the audit path: every request the API accepted is on the scored topic
exactly once, and no rejected one, counted from the recorded responses (HAR) against the
topic read to its end after the server stopped. A second, smaller run serves with API
keys, where the document states its security schemes and ``ignored_auth`` tries without.

Seed: fixed in CI (``CI`` set), random locally, ``API_FUZZ_SEED=N`` to replay a run
(the seed is printed); ``API_FUZZ_EXAMPLES`` sets the examples per operation.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from tests.integration.conftest import Bed
from tests.integration.serve_proc import serving
from tests.integration.streamer_proc import REPO, decode_single_object, plain_schema

CI_SEED = 29
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "350"))
MIN_CASES = 1000


def _seed() -> int:
    given = os.environ.get("API_FUZZ_SEED")
    if given:
        return int(given)
    return CI_SEED if os.environ.get("CI") else random.randrange(2**31)


def _fuzz(
    url: str, seed: int, tmp: Path, examples: int = EXAMPLES, *options: str
) -> subprocess.CompletedProcess[str]:
    """``st run`` over every operation with all checks; its run report and HAR in ``tmp``."""
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{url}/openapi.json",
        "--checks=all",
        "--exclude-checks=positive_data_acceptance",  # replaced by valid_requests_are_accepted
        f"--max-examples={examples}",
        f"--seed={seed}",
        "--generation-database=none",
        "--report=json,har",
        f"--report-json-path={tmp / 'run.json'}",
        f"--report-har-path={tmp / 'exchanges.har'}",
        "--output-sanitize=false",
        "--no-color",
        "--warnings=off",
        *options,
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.openapi_checks"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        command, cwd=tmp, env=env, capture_output=True, text=True, timeout=500, check=False
    )


def _accepted(har: Path) -> Counter[str]:
    """The transaction ids the API scored, from every exchange the run recorded."""
    entries: list[dict[str, Any]] = json.loads(har.read_text())["log"]["entries"]
    scored: Counter[str] = Counter()
    for entry in entries:
        request, response = entry["request"], entry["response"]
        if request["method"] != "POST" or response["status"] != 200:
            continue
        body = json.loads(response["content"]["text"])
        if request["url"].endswith("/v1/score"):
            scored[body["transaction_id"]] += 1
        elif request["url"].endswith("/v1/score:batch") or request["url"].endswith("%3Abatch"):
            scored.update(r["transaction_id"] for r in body["results"] if r["status"] == "scored")
    return scored


def _published(bootstrap: str, topic: str) -> Counter[str]:
    """The transaction ids on ``topic``, read from its start to its end."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}-audit", "enable.auto.commit": False}
    )
    try:
        _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, 0)])
        schema = plain_schema("scored_event")
        ids: Counter[str] = Counter()
        read, deadline = 0, time.monotonic() + 60
        while read < end and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            read = (message.offset() or 0) + 1
            ids[decode_single_object(message.value() or b"", schema)["transaction_id"]] += 1
        assert read == end, f"read {read} of {end} records"
        return ids
    finally:
        consumer.close()


def test_the_api_keeps_its_openapi_contract_and_publishes_exactly_what_it_accepted(
    bed: Bed,
) -> None:
    seed = _seed()
    print(f"schemathesis seed {seed} (replay: API_FUZZ_SEED={seed})")
    topic = bed.make_topic("scored", partitions=1)
    started = time.monotonic()
    with serving(
        bed.tmp,
        "--publish",
        redis_url=bed.redis_url,
        redis_key_prefix=bed.prefix,
        kafka_bootstrap_servers=bed.kafka,
        output_topic=topic,
    ) as server:
        done = _fuzz(server.url, seed, bed.tmp)
    assert done.returncode == 0, f"seed {seed}:\n{done.stdout[-20000:]}\n{done.stderr[-3000:]}"
    report = json.loads((bed.tmp / "run.json").read_text())
    accepted = _accepted(bed.tmp / "exchanges.har")
    print(
        f"{report['test_cases']['generated']} cases over {report['operations']['tested']} "
        f"operations in {report['running_time']:.0f} s (all {time.monotonic() - started:.0f} s), "
        f"{sum(accepted.values())} events accepted"
    )
    assert report["operations"]["tested"] == report["operations"]["total"]
    assert report["test_cases"]["generated"] >= MIN_CASES
    assert sum(accepted.values()) > 0
    assert _published(bed.kafka, topic) == accepted


def test_with_api_keys_the_document_states_them_and_the_server_keeps_them(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """The same fuzzer with ``--api-keys-file``: the scoring routes state their security
    schemes, and schemathesis' ``ignored_auth`` check sends them without a key and with a
    wrong one (401 each time) while the cases with the key are scored."""
    key = "fedcba9876543210fedc"
    keys = tmp_path / "keys"
    keys.write_text(f"{key}\n")
    seed = _seed()
    print(f"schemathesis seed {seed} (replay: API_FUZZ_SEED={seed})")
    with serving(
        tmp_path, "--api-keys-file", str(keys), redis_url=redis_url, redis_key_prefix=redis_prefix
    ) as server:
        done = _fuzz(server.url, seed, tmp_path, 40, f"--header=Authorization: Bearer {key}")
        log = server.log.read_text()
    assert done.returncode == 0, f"seed {seed}:\n{done.stdout[-20000:]}\n{done.stderr[-3000:]}"
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["operations"]["tested"] == report["operations"]["total"]
    statuses = Counter(
        entry["response"]["status"]
        for entry in json.loads((tmp_path / "exchanges.har").read_text())["log"]["entries"]
        if entry["request"]["url"].endswith("/v1/score")
    )
    print(f"{report['test_cases']['generated']} cases; /v1/score answers {dict(statuses)}")
    assert statuses[401] > 0, statuses
    assert statuses[200] > 0, statuses
    assert key not in log
