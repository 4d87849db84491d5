"""``build_features``: each event's model input, exactly as ``streamer features build``.

The single-process builder folds the history in (partition, offset) order, the stream's
order (``backfill.history``). Velocity state is a card's own: a card's features depend on
its earlier events only, so the history is grouped by card (``groupBy("card_id")
.applyInArrow``) and each card's events are folded in (partition, offset) order by the
same kernel, with the same snapshot from Redis, and written by the same ``feature_table``.
A history without partition and offset columns is taken in its own order (partition 0,
the row number as the offset), as the single-process builder takes a plain file.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as sf
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from streamer.backfill.history import feature_table
from streamer.config.settings import Settings
from streamer.errors import Rejection
from streamer.spark.arrowio import ROW, conformer, input_rows
from streamer.spark.job import Job, degraded, prepare
from streamer.spark.positions import with_row_index
from streamer.spark.scoring import configured
from streamer.spark.worker import task_kernel

PART = "__streamer_partition"
_SOURCE = ("source_partition", "source_offset")
_POSITION_COLUMNS = (("partition", "offset"), ("source_partition", "source_offset"))


def build_features(
    history_df: DataFrame,
    model: str | None = None,
    settings: Settings | None = None,
    *,
    allow_degraded: bool = False,
) -> DataFrame:
    """The built rows of ``history_df``: ``transaction_id``, ``card_id``, ``event_time``
    (epoch ms), ``source_partition``, ``source_offset`` and one float64 column per model
    input. Rows that cannot be scored are left out, as ``features build`` leaves them."""
    settings = configured(settings, model)
    conformer(history_df.columns)
    job = prepare(settings, allow_degraded=allow_degraded)
    spark_schema = from_arrow_schema(schema(job))
    out = to_arrow_schema(spark_schema, timezone="UTC")

    def one_card(table: pa.Table) -> pa.Table:  # pyspark reads the eval type off the hints
        return card_features(job, out, table)

    return _positioned(history_df).groupBy("card_id").applyInArrow(one_card, spark_schema)


def schema(job: Job) -> pa.Schema:
    """The columns ``feature_table`` writes, for this job's model."""
    fields: list[pa.Field[Any]] = [pa.field(n, pa.string()) for n in ("transaction_id", "card_id")]
    fields += [pa.field(n, pa.int64()) for n in ("event_time", *_SOURCE)]
    fields += [pa.field(n, pa.float64()) for n in job.feature_names]
    return pa.schema(fields)


def _positioned(df: DataFrame) -> DataFrame:
    """``df`` with each row's (partition, offset) in ``PART`` and ``ROW``."""
    for part, off in _POSITION_COLUMNS:
        if {part, off} <= set(df.columns):
            return df.withColumn(PART, sf.col(part).cast("long")).withColumn(
                ROW, sf.col(off).cast("long")
            )
    return with_row_index(df, ROW).withColumn(PART, sf.lit(0).cast("long"))


def card_features(job: Job, out: pa.Schema, table: pa.Table) -> pa.Table:
    """One card's events folded in (partition, offset) order by a fresh kernel."""
    ordered = table.sort_by([(PART, "ascending"), (ROW, "ascending")])
    parts: list[int] = ordered.column(PART).to_pylist()  # type: ignore[assignment]
    batch = ordered.drop_columns([PART]).combine_chunks().to_batches()
    if not batch:
        return out.empty_table()
    names = [n for n in ordered.schema.names if n not in (ROW, PART)]
    offsets, _, rows = input_rows(batch[0], conformer(names))
    keep = [i for i, row in enumerate(rows) if not isinstance(row, Rejection)]
    if not keep:
        return out.empty_table()
    events: list[dict[str, Any]] = [rows[i] for i in keep]
    sources = [(parts[i], offsets[i]) for i in keep]
    scored = task_kernel(job).score(events, sources)
    if scored.degraded:
        degraded(job, "build")
    if scored.matrix is None:
        return out.empty_table()
    built: pa.Table = feature_table(events, sources, scored).cast(out)
    return built
