"""``score``: a DataFrame of TransactionEvents scored by the kernel ``score-file`` uses.

The driver verifies the model and asks Redis once (``job.prepare``), numbers the rows
(``positions``: a row's number is its ``source_offset``, as in ``score-file``), and sends
each card's events to one task in row order (``repartition`` by card, sorted within the
partition), so the velocity state a task folds in memory is exactly what ``score-file``
folds over the whole file. ``mapInArrow`` hands each task's Arrow record batches to
``score_task``, one kernel run per batch: one Redis round trip and one model run.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from streamer.backfill.run import OFFLINE_PARTITION
from streamer.config.loader import load_settings
from streamer.config.settings import Settings
from streamer.errors import Rejection
from streamer.scoring.kernel import ScoringKernel
from streamer.spark.arrowio import (
    ROW,
    as_records,
    conformer,
    input_rows,
    output_schema,
    scored_batch,
)
from streamer.spark.job import Job, degraded, prepare
from streamer.spark.positions import with_row_index
from streamer.spark.worker import task_kernel


def score(
    df: DataFrame,
    model: str | None = None,
    settings: Settings | None = None,
    *,
    allow_degraded: bool = False,
) -> DataFrame:
    """Score ``df``'s TransactionEvents: one output row per input row (see ``arrowio``).

    ``model`` overrides ``STREAMER_MODEL``; ``settings`` default to the environment's.
    Raises at once (``ConfigError``, ``ModelError``, ``DependencyError``) when a column is
    missing, the model fails verification, or Redis is unreachable and not
    ``allow_degraded``; the returned DataFrame is lazy, like any other."""
    settings = configured(settings, model)
    conformer(df.columns)
    job = prepare(settings, allow_degraded=allow_degraded)
    spark_schema = from_arrow_schema(output_schema())
    arrow = to_arrow_schema(spark_schema, timezone="UTC")
    ordered = with_row_index(df, ROW).repartition("card_id").sortWithinPartitions(ROW)
    return ordered.mapInArrow(partial(score_task, job, arrow), spark_schema)


def configured(settings: Settings | None, model: str | None) -> Settings:
    """The settings of a job: given or from the environment, with ``model`` if named."""
    settings = settings or load_settings()
    return settings.model_copy(update={"model": model}) if model else settings


def score_task(job: Job, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[Any]:
    """One task: a fresh kernel (velocity state of this task's rows only), batch by batch."""
    kernel = task_kernel(job)
    conform = None
    for batch in batches:
        if conform is None:
            conform = conformer([n for n in batch.schema.names if n != ROW])
        positions, raw, rows = input_rows(batch, conform)
        yield score_rows(kernel, job, schema, positions, raw, rows)


def score_rows(
    kernel: ScoringKernel,
    job: Job,
    schema: pa.Schema,
    positions: list[int],
    raw: list[Any],
    rows: list[Any],
) -> pa.RecordBatch:
    """One kernel run over a batch's valid rows; the others come back as rejection rows."""
    valid = [i for i, row in enumerate(rows) if not isinstance(row, Rejection)]
    rejected = [(positions[i], r, raw[i]) for i, r in enumerate(rows) if isinstance(r, Rejection)]
    if not valid:
        return scored_batch({}, 0, rejected, schema)
    events = as_records([rows[i] for i in valid])
    scored = kernel.score(events, [(OFFLINE_PARTITION, positions[i]) for i in valid])
    if scored.degraded:
        degraded(job, "score")
    rejected += [(positions[valid[i]], problem, events[i]) for i, problem in scored.rejected]
    return scored_batch(scored.columns, len(scored.rows), rejected, schema)
