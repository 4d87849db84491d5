"""Each row's position in a DataFrame's order, computed without moving the rows.

``score-file`` gives every row its row number: it is the ScoredEvent's ``source_offset``
and, with velocity state on, the order in which a card's events are folded. Spark has no
row number that scales (a window over the whole DataFrame sends every row to one task),
so the number is built from ``monotonically_increasing_id`` (the partition index in the
upper bits, the row within the partition below): one small job counts each partition's
rows, and each row's number is the count of the partitions before its own plus its place
in its partition. For a DataFrame read from one file this is the file's row number; the
same input read the same way numbers the same, so a retried task sees the same positions.
"""

from __future__ import annotations

from itertools import accumulate

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as sf

_SHIFT = 33  # monotonically_increasing_id: partition index << 33 | row in the partition
_ID = "__streamer_id"


def with_row_index(df: DataFrame, name: str) -> DataFrame:
    """``df`` with a column ``name``: the row's number (0-based) in ``df``'s order."""
    tagged = df.withColumn(_ID, sf.monotonically_increasing_id())
    part = sf.shiftright(sf.col(_ID), _SHIFT)
    per_part = tagged.groupBy(part.alias("p")).agg(sf.count(sf.lit(1)).alias("n")).collect()
    counts = {int(row["p"]): int(row["n"]) for row in per_part}
    if not counts:
        return df.withColumn(name, sf.lit(0).cast("long"))
    sizes = [counts.get(p, 0) for p in range(max(counts) + 1)]
    starts = [0, *accumulate(sizes)][:-1]
    start: Column = sf.element_at(
        sf.array(*[sf.lit(s).cast("long") for s in starts]), (part + 1).cast("int")
    )
    within = sf.col(_ID).bitwiseAND(sf.lit((1 << _SHIFT) - 1))
    return tagged.withColumn(name, start + within).drop(_ID)
