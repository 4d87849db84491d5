"""Spark gives the answers one process gives: ``score`` against ``score-file``,
``build_features`` against ``features build``, on the same events and the real Redis.

One ``local[2]`` session for the whole run (every Spark test is in one xdist group, so one
worker starts it); ``local[2,2]`` lets Spark retry a failed task once, as a cluster does.
``STREAMER_TEST_SPARK_EVENTS`` raises the event count (50000 for the issue's full check).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession

from streamer.config.settings import Settings
from streamer.errors import DependencyError, ModelError
from streamer.spark import build_features, score
from tests.cli import streamer_cli
from tests.integration.backfill_files import REPO, as_written, synthetic_events, synthetic_snapshot

pytestmark = pytest.mark.xdist_group("spark")

EVENTS = int(os.environ.get("STREAMER_TEST_SPARK_EVENTS", "2000"))


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """The run's one Spark session; its Python workers run this interpreter (the venv's)."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2,2]")
        .appName("streamer-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "6")
        .config("spark.sql.adaptive.coalescePartitions.enabled", "false")  # tasks stay 6
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def env(redis_url: str) -> Iterator[dict[str, str]]:
    """score-file's settings: the synthetic snapshot under a key prefix of this module's."""
    with synthetic_snapshot(redis_url) as settings:
        yield settings


def settings_of(env: dict[str, str], **changes: Any) -> Settings:
    given: dict[str, Any] = {
        "redis_url": env["STREAMER_REDIS_URL"],
        "redis_key_prefix": env["STREAMER_REDIS_KEY_PREFIX"],
        "models_dir": REPO / "models",
    }
    return Settings(**{**given, **changes})


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``EVENTS`` synthetic events with bad rows among them: fields the kernel refuses
    (currency, amount), fields no TransactionEvent has (an unknown channel, a null card,
    a null merchant category) and strings of arbitrary characters."""
    rows = [as_written(e) for e in synthetic_events(EVENTS)]
    rng = random.Random(5)
    junk = "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(40))
    bad = [
        dict(rows[0], transaction_id="bad-currency", currency="XXQ"),
        dict(rows[1], transaction_id="bad-amount", amount_minor=0),
        dict(rows[2], transaction_id="bad-channel", channel="TELEPATHY"),
        dict(rows[3], transaction_id="no-card", card_id=None),
        dict(rows[4], transaction_id="no-mcc", mcc=None),
        dict(rows[5], transaction_id=junk, merchant_country=junk, currency=junk[:3]),
    ]
    for i, row in enumerate(bad):
        rows.insert((i + 1) * len(rows) // (len(bad) + 1), row)
    path = tmp_path_factory.mktemp("spark") / "events.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=EVENTS // 3)
    return path


@pytest.fixture(scope="module")
def expected(events_file: Path, env: dict[str, str]) -> dict[int, tuple[Any, ...]]:
    """score-file's answers for ``events_file``."""
    return _score_file(events_file, env)


def _score_file(path: Path, env: dict[str, str], *extra: str) -> dict[int, tuple[Any, ...]]:
    """score-file's answer per row: (score, decision, status, reasons) or the rejection."""
    target = path.with_name(f"{uuid.uuid4().hex}.parquet")
    result = streamer_cli("score-file", str(path), str(target), *extra, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    answers = {r["source_offset"]: _scored(r) for r in pq.read_table(target).to_pylist()}
    for line in target.with_suffix(".rejects.jsonl").read_text().splitlines():
        reject = json.loads(line)
        answers[reject["row"]] = ("rejected", reject["error_class"], reject["message"])
    return answers


def _scored(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["transaction_id"], row["score"], row["decision"], row["feature_status"],
            row["reasons"])  # fmt: skip


def _spark_answers(df: DataFrame) -> dict[int, tuple[Any, ...]]:
    answers: dict[int, tuple[Any, ...]] = {}
    for row in (r.asDict(recursive=True) for r in df.collect()):
        if row["error_class"] is None:
            answers[row["source_offset"]] = _scored(row)
        else:
            answers[row["source_offset"]] = ("rejected", row["error_class"], row["error_message"])
    return answers


def test_spark_scores_decisions_and_rejections_equal_score_files(
    spark: SparkSession, env: dict[str, str], events_file: Path, expected: dict[int, Any]
) -> None:
    scored = score(spark.read.parquet(str(events_file)), settings=settings_of(env))
    got = _spark_answers(scored)
    assert len(got) == EVENTS + 6
    assert got == expected
    rejected = {v[1] for v in got.values() if v[0] == "rejected"}
    assert rejected >= {"SchemaMismatch"}
    assert sum(v[0] == "rejected" for v in got.values()) == 6


def test_the_spark_submit_entry_point_writes_what_score_file_writes(
    spark: SparkSession,
    env: dict[str, str],
    events_file: Path,
    expected: dict[int, Any],
    tmp_path: Path,
) -> None:
    """``python -m streamer.spark score IN OUT``, run in this process so that it joins the
    session as it joins spark-submit's: Parquet out, one row per row in, score-file's
    answers; an existing OUT is refused, never overwritten."""
    from typer.testing import CliRunner

    from streamer.spark.__main__ import app

    target = tmp_path / "scored.parquet"
    result = CliRunner().invoke(app, ["score", str(events_file), str(target)], env=env)
    assert result.exit_code == 0, result.output
    assert _spark_answers(spark.read.parquet(str(target))) == expected
    again = CliRunner().invoke(app, ["score", str(events_file), str(target)], env=env)
    assert again.exit_code != 0
    assert len(pq.read_table(target)) == EVENTS + 6


def test_rows_of_arbitrary_bytes_are_rejection_rows_not_a_failed_job(
    spark: SparkSession, env: dict[str, str], tmp_path: Path
) -> None:
    rng = random.Random(11)
    rows = [as_written(e) for e in synthetic_events(40, seed=3)]
    table = pa.Table.from_pylist(rows)
    noise = pa.array([rng.randbytes(rng.randrange(0, 30)) for _ in rows], pa.binary())
    table = table.set_column(table.schema.get_field_index("card_id"), "card_id", noise)
    path = tmp_path / "bytes.parquet"
    pq.write_table(table, path)

    got = _spark_answers(score(spark.read.parquet(str(path)), settings=settings_of(env)))

    assert sorted(got) == list(range(40))
    assert {v[:2] for v in got.values()} == {("rejected", "SchemaMismatch")}
    assert {v[2] for v in got.values()} == {
        "not a TransactionEvent: card_id (string) does not match the schema"
    }


def test_spark_features_equal_the_single_process_builders_every_value(
    spark: SparkSession, env: dict[str, str], tmp_path: Path
) -> None:
    # A topic dump: each card in one of 3 partitions, offsets in the stream's order, the
    # file's rows shuffled (the builders must order by partition and offset, not by row).
    rows = [as_written(e) for e in synthetic_events(EVENTS, seed=8)]
    counters = [0, 0, 0]
    for row in rows:
        part = int(row["card_id"].rsplit("-", 1)[-1]) % 3
        row["partition"], row["offset"] = part, counters[part]
        counters[part] += 1
    random.Random(2).shuffle(rows)
    rows.insert(EVENTS // 2, dict(rows[0], transaction_id="bad", currency="XXQ", offset=10**9))
    history = tmp_path / "history.parquet"
    pq.write_table(pa.Table.from_pylist(rows), history)
    out = tmp_path / "features.parquet"
    result = streamer_cli("features", "build", str(history), "--out", str(out), env=env,
                          timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = sorted(pq.read_table(out).to_pylist(), key=_where)

    built = build_features(spark.read.parquet(str(history)), settings=settings_of(env))
    got = sorted((r.asDict() for r in built.collect()), key=_where)

    assert len(got) == EVENTS
    assert got == expected
    assert any(r["txn_count_24h"] > 0 for r in got)  # the velocity fields did move


def _where(row: dict[str, Any]) -> tuple[int, int]:
    return row["source_partition"], row["source_offset"]


def test_a_model_failing_verification_stops_the_job_before_any_task(
    spark: SparkSession, env: dict[str, str], events_file: Path, tmp_path: Path
) -> None:
    model = tmp_path / "tampered"
    shutil.copytree(REPO / "models" / "fraud-gbt" / "2", model)
    meta = json.loads((model / "metadata.json").read_text())
    meta["sha256"] = "0" * 64
    (model / "metadata.json").write_text(json.dumps(meta))
    df, context = spark.read.parquet(str(events_file)), spark.sparkContext
    group = f"tampered-{uuid.uuid4().hex}"
    context.setJobGroup(group, "a job that must not start")
    try:
        with pytest.raises(ModelError, match="sha256"):
            score(df, model=str(model), settings=settings_of(env))
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
    assert context.statusTracker().getJobIdsForGroup(group) == []


def test_redis_down_fails_with_a_clear_error_unless_degraded_is_allowed(
    spark: SparkSession, env: dict[str, str], tmp_path: Path
) -> None:
    rows = [as_written(e) for e in synthetic_events(30, seed=4)]
    path = tmp_path / "few.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    down = settings_of(env, redis_url="redis://127.0.0.1:1/0")
    df = spark.read.parquet(str(path))

    with pytest.raises(DependencyError, match=r"cannot reach Redis at .*allow-degraded"):
        score(df, settings=down)
    degraded = _spark_answers(score(df, settings=down, allow_degraded=True))

    assert {v[3] for v in degraded.values()} == {"DEGRADED"}
    assert len(degraded) == 30


def test_a_retried_task_gives_the_same_output(
    spark: SparkSession,
    env: dict[str, str],
    events_file: Path,
    expected: dict[int, Any],
    tmp_path: Path,
) -> None:
    failed = tmp_path / "failed-once"

    def fail_first_attempt(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        held = list(batches)  # every row of the task was scored by this attempt
        context = TaskContext.get()
        if context is not None and context.attemptNumber() == 0 and held:
            failed.touch()
            raise RuntimeError("the first attempt of every task fails after scoring")
        yield from held

    scored = score(spark.read.parquet(str(events_file)), settings=settings_of(env))
    retried = scored.mapInArrow(fail_first_attempt, scored.schema)

    assert _spark_answers(retried) == expected
    assert failed.exists()


def test_each_python_worker_loads_the_model_once_for_all_its_tasks(
    spark: SparkSession, env: dict[str, str], events_file: Path, tmp_path: Path
) -> None:
    model = tmp_path / "fraud-gbt-copy"  # a location no other test's workers have loaded
    shutil.copytree(REPO / "models" / "fraud-gbt" / "2", model)
    location = str(model / "model.onnx")

    def loads_here(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from streamer.spark.worker import LOADS

        for _ in batches:
            pass
        yield pa.RecordBatch.from_pylist([{"pid": os.getpid(), "loads": LOADS[location]}])

    df = spark.read.parquet(str(events_file))
    scored = score(df, model=str(model), settings=settings_of(env))
    assert len(_spark_answers(scored)) == EVENTS + 6  # 6 tasks on 2 cores
    # Then ask the Python workers Spark keeps (reuse) how often each loaded that model.
    pool = spark.range(0, 64, numPartitions=32)
    probes = pool.mapInArrow(loads_here, "pid long, loads long").collect()

    loads = {p["pid"]: p["loads"] for p in probes}
    assert 1 in loads.values()
    assert max(loads.values()) == 1  # a worker that ran several scoring tasks loaded it once
