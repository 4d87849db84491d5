"""A newcomer's failures are one line and an exit code, for every command that connects.

Each test runs ``streamer`` as a subprocess (``tests/cli.py``), as a user at a terminal
would, against the real broker and Redis of the run (or an address where nothing listens).
The promise checked: exit 3 for an unavailable dependency within ``BOUND_S``, exit 2 for a
usage error or a bad setting, and exactly one ``streamer: `` line on stderr that names the
problem: no traceback, no raw librdkafka ``%3|…|FAIL|`` lines.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from tests.cli import REPO, streamer_cli

BOUND_S = 15.0  # the promise: an unavailable dependency is reported within this
DEAD_BROKER = "127.0.0.1:1"
DEAD_REDIS = "redis://127.0.0.1:1/0"


def _timed(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = streamer_cli(*args, env=env, timeout=90)
    return result, time.monotonic() - started


def _one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The single ``streamer: `` line; everything else on stderr is structured JSON logs."""
    lines = result.stderr.splitlines()
    ours = [line for line in lines if line.startswith("streamer: ")]
    assert len(ours) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "|FAIL|" not in result.stderr, result.stderr[-3000:]
    assert "%3|" not in result.stderr, result.stderr[-3000:]
    others = [line for line in lines if not line.startswith("streamer: ")]
    assert all(line.startswith("{") for line in others), others[:5]
    for needle in needles:
        assert needle in ours[0], ours[0]
    return ours[0]


def _env(**settings: str) -> dict[str, str]:
    env = {f"STREAMER_{k.upper()}": v for k, v in settings.items()}
    env.setdefault("STREAMER_MODELS_DIR", str(REPO / "models"))
    env.setdefault("STREAMER_METRICS_PORT", "0")
    return env


@pytest.fixture
def settings(
    kafka_bootstrap: str, redis_url: str, redis_prefix: str, make_topic: Callable[..., str]
) -> dict[str, str]:
    """Settings of a working set-up: real broker and Redis, this test's own topics."""
    return {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "redis_url": redis_url,
        "redis_key_prefix": redis_prefix,
        "input_topic": make_topic("in", partitions=1),
        "output_topic": make_topic("out", partitions=1),
        "dlq_topic": make_topic("dlq", partitions=1),
    }


# Every command that talks to Kafka, with the topic options it needs.
KAFKA_COMMANDS: dict[str, tuple[str, ...]] = {
    "run": ("run",),
    "produce": ("produce", "-n", "5", "-q"),
    "consume": ("consume", "-n", "1"),
    "dlq inspect": ("dlq", "inspect"),
    "dlq replay": ("dlq", "replay"),
    "topics create": ("topics", "create"),
}


@pytest.mark.parametrize("command", list(KAFKA_COMMANDS))
def test_unreachable_broker_is_one_line_and_exit_3_for_every_command(
    command: str, settings: dict[str, str]
) -> None:
    env = _env(**{**settings, "kafka_bootstrap_servers": DEAD_BROKER})
    result, seconds = _timed(*KAFKA_COMMANDS[command], env=env)
    assert result.returncode == 3, result.stderr[-2000:]
    assert seconds < BOUND_S, f"{command} took {seconds:.1f}s"
    _one_line(result, DEAD_BROKER, "STREAMER_KAFKA_BOOTSTRAP_SERVERS")


@pytest.mark.parametrize(
    ("command", "setting"),
    [
        ("run", "input_topic"),
        ("run", "output_topic"),
        ("run", "dlq_topic"),
        ("produce", "input_topic"),
        ("consume", "output_topic"),
        ("dlq inspect", "dlq_topic"),
        ("dlq replay", "dlq_topic"),
    ],
)
def test_missing_topic_is_one_line_naming_it(
    command: str, setting: str, settings: dict[str, str], unique: str
) -> None:
    missing = f"t-{unique}-missing"
    result, seconds = _timed(*KAFKA_COMMANDS[command], env=_env(**{**settings, setting: missing}))
    assert result.returncode == 3, result.stderr[-2000:]
    assert seconds < BOUND_S, f"{command} took {seconds:.1f}s"
    _one_line(result, repr(missing), "streamer topics create")


@pytest.mark.parametrize(
    "args",
    [
        ("features", "load", "--synthetic", "--cards", "10", "--merchants", "5"),
        ("score-file", "{source}", "{target}"),
    ],
    ids=["features load", "score-file"],
)
def test_unreachable_redis_is_one_line_and_exit_3(
    args: tuple[str, ...], settings: dict[str, str], tmp_path: Path
) -> None:
    from tests.integration.backfill_files import write_events

    source = write_events(tmp_path / "in.avro", 20)
    target = tmp_path / "out.avro"
    argv = [a.format(source=source, target=target) for a in args]
    result, seconds = _timed(*argv, env=_env(**{**settings, "redis_url": DEAD_REDIS}))
    assert result.returncode == 3, result.stderr[-2000:]
    assert seconds < BOUND_S
    _one_line(result, "127.0.0.1:1", "STREAMER_REDIS_URL")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.avro"]  # nothing half-written


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("runn",), "No such command 'runn'"),
        (("consume", "--from-begining"), "No such option: --from-begining"),
        (("produce", "--count", "many"), "Invalid value for '--count'"),
        (("topics",), "Usage:"),
    ],
)
def test_usage_errors_are_clicks_message_and_exit_2(args: tuple[str, ...], needle: str) -> None:
    result = streamer_cli(*args, timeout=60)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_debug_is_accepted_after_the_command_and_shows_the_traceback(
    settings: dict[str, str],
) -> None:
    env = _env(**{**settings, "kafka_bootstrap_servers": DEAD_BROKER})
    result = streamer_cli("run", "--debug", env=env, timeout=90)
    assert "No such option" not in result.stderr
    assert "Traceback" in result.stderr
    assert "DependencyError" in result.stderr


def test_busy_metrics_port_is_one_line_and_exit_2(settings: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result, _ = _timed("run", env=_env(**settings, metrics_port=str(port)))
    assert result.returncode == 2, result.stderr[-2000:]
    _one_line(result, str(port), "STREAMER_METRICS_PORT")


@pytest.mark.parametrize("command", ["run", "produce", "consume", "dlq inspect"])
def test_misspelled_variable_is_refused_with_a_suggestion(
    command: str, settings: dict[str, str]
) -> None:
    env = {**_env(**settings), "STREAMER_MAX_BATCHSIZE": "5"}
    result = streamer_cli(*KAFKA_COMMANDS[command], env=env, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    _one_line(result, "STREAMER_MAX_BATCHSIZE", "STREAMER_MAX_BATCH_SIZE")


@pytest.mark.parametrize("command", ["run", "produce"])
@pytest.mark.parametrize(
    ("variable", "value", "needles"),
    [
        ("STREAMER_KAFKA_PROPERTIES", '{"sasl.mechanism": ', ("STREAMER_KAFKA_PROPERTIES",)),
        ("STREAMER_KAFKA_PROPERTIES", '["a"]', ("STREAMER_KAFKA_PROPERTIES",)),
        (
            "STREAMER_KAFKA_PROP_SASL_MECHANIZM",
            "PLAIN",
            ("STREAMER_KAFKA_PROP_SASL_MECHANIZM", "sasl.mechanizm"),
        ),
        (
            "STREAMER_KAFKA_PROP_SECURITY_PROTOCOL",
            "NOPE",
            ("STREAMER_KAFKA_PROP_SECURITY_PROTOCOL",),
        ),
    ],
    ids=["bad-json", "not-an-object", "unknown-property", "bad-value"],
)
def test_kafka_property_errors_name_the_variable_the_user_set(
    command: str, variable: str, value: str, needles: tuple[str, ...], settings: dict[str, str]
) -> None:
    result = streamer_cli(
        *KAFKA_COMMANDS[command], env={**_env(**settings), variable: value}, timeout=60
    )
    assert result.returncode == 2, result.stderr[-2000:]
    line = _one_line(result, *needles)
    assert "--config None" not in line
    if variable != "STREAMER_KAFKA_PROPERTIES":
        assert "STREAMER_KAFKA_PROPERTIES" not in line.replace(variable, ""), line


@pytest.fixture
def tiny_topic(admin: AdminClient, unique: str) -> Iterator[str]:
    """A topic whose broker-side limit refuses every synthetic event (too large)."""
    name = f"t-{unique}-tiny"
    new = NewTopic(name, 1, 1, config={"max.message.bytes": "64"})
    admin.create_topics([new])[name].result(timeout=30)
    yield name
    admin.delete_topics([name])[name].exception(timeout=30)


def test_produce_says_how_many_were_not_delivered(
    tiny_topic: str, settings: dict[str, str]
) -> None:
    result = streamer_cli("produce", "-t", tiny_topic, "-n", "7", "-q", env=_env(**settings))
    assert result.returncode == 3, result.stderr[-2000:]
    _one_line(result, "7 of 7", "not delivered")


def test_produce_counts_exactly_the_events_that_were_not_delivered(
    admin: AdminClient, settings: dict[str, str], unique: str
) -> None:
    """A broker limit that refuses some batches and takes others: the count must be right."""
    name = f"t-{unique}-some"
    new = NewTopic(name, 1, 1, config={"max.message.bytes": "1500"})
    admin.create_topics([new])[name].result(timeout=30)
    try:
        result = streamer_cli("produce", "-t", name, "-n", "300", "-q", env=_env(**settings))
        low, high = Consumer({"bootstrap.servers": settings["kafka_bootstrap_servers"],
                              "group.id": f"g-{unique}"}).get_watermark_offsets(
            TopicPartition(name, 0), timeout=10)  # fmt: skip
    finally:
        admin.delete_topics([name])[name].exception(timeout=30)
    line = _one_line(result, "of 300", "not delivered")
    assert result.returncode == 3
    undelivered = int(re.search(r"(\d+) of 300", line).group(1))  # type: ignore[union-attr]
    assert undelivered > 0
    assert high - low == 300 - undelivered, line


def test_topics_create_is_idempotent_and_applies_partitions_and_retention(
    admin: AdminClient, kafka_bootstrap: str, unique: str
) -> None:
    names = {"input_topic": f"t-{unique}-in", "output_topic": f"t-{unique}-out"}
    env = _env(kafka_bootstrap_servers=kafka_bootstrap, **names)
    args = ("topics", "create", "--partitions", "3", "--retention-hours", "2")
    try:
        first = streamer_cli(*args, "--dlq-retention-hours", "24", env=env, timeout=90)
        second = streamer_cli(*args, env=env, timeout=90)
        metadata = admin.list_topics(timeout=10).topics
        resources = [ConfigResource("topic", n) for n in (*names.values(), f"t-{unique}-in.dlq")]
        configs = {
            r.name: f.result(timeout=10) for r, f in admin.describe_configs(resources).items()
        }
    finally:
        made = [n for n in (*names.values(), f"t-{unique}-in.dlq") if n]
        for future in admin.delete_topics(made).values():
            future.exception(timeout=30)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count(": created") == 3, first.stderr
    assert second.returncode == 0, second.stderr
    assert second.stderr.count(": exists") == 3, second.stderr
    assert len(metadata[names["input_topic"]].partitions) == 3
    assert len(metadata[f"t-{unique}-in.dlq"].partitions) == 1
    assert configs[names["output_topic"]]["retention.ms"].value == str(2 * 3_600_000)
    assert configs[f"t-{unique}-in.dlq"]["retention.ms"].value == str(24 * 3_600_000)


def test_topics_create_says_when_an_existing_topic_differs(
    settings: dict[str, str],
) -> None:
    """The fixture's topics have 1 partition; asking for 3 must not pass silently."""
    result = streamer_cli("topics", "create", "--partitions", "3", env=_env(**settings))
    assert result.returncode == 0, result.stderr
    assert f"{settings['input_topic']}: exists with 1 partitions (asked for 3)" in result.stderr


def test_consume_decodes_input_and_scored_topics_without_schema(
    settings: dict[str, str], kafka_bootstrap: str
) -> None:
    from streamer import ScoringKernel, load_model
    from streamer.codec.schemas import scored_schema
    from streamer.codec.wire import make_encoder
    from streamer.testing import InMemoryFeatures, sample_event

    env = _env(**settings)
    sent = streamer_cli("produce", "-n", "3", "-q", env=env, timeout=90)
    assert sent.returncode == 0, sent.stderr
    model = load_model("fraud-gbt", REPO / "models")
    scored = ScoringKernel(model, InMemoryFeatures(model)).score([sample_event()], [(0, 0)])
    encoder = make_encoder("single-object", schema=scored_schema())
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(settings["output_topic"], encoder.encode(scored.records[0]))
    assert producer.flush(10) == 0

    inputs = streamer_cli("consume", "-t", settings["input_topic"], "--from-beginning", "-n", "3",
                          env=env, timeout=90)  # fmt: skip
    outputs = streamer_cli("consume", "--from-beginning", "-n", "1", env=env, timeout=90)
    assert inputs.returncode == 0, inputs.stderr
    assert outputs.returncode == 0, outputs.stderr
    assert inputs.stdout.count('"amount_minor"') == 3
    assert "rejected" not in inputs.stdout
    assert '"decision"' in outputs.stdout
    assert "rejected" not in outputs.stdout


def test_version_prints_full_versions() -> None:
    result = streamer_cli("version")
    assert result.returncode == 0
    for library in ("confluent-kafka", "librdkafka", "onnxruntime", "fastavro", "python"):
        assert re.search(rf"{library} \d+\.\d+\.\d+", result.stdout), result.stdout
    assert "Avro codec C)" in result.stdout  # `make setup` built the C codec


def test_models_list_shows_a_tampered_models_problem(tmp_path: Path) -> None:
    shutil.copytree(REPO / "models", tmp_path / "models")
    (onnx,) = (tmp_path / "models").glob("fraud-gbt/1/model.onnx")
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
    result = streamer_cli(
        "models", "list", "--models-dir", str(tmp_path / "models"), env={"COLUMNS": "300"}
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "fraud-gbt@1" in line)
    assert "sha256" in row, result.stdout
