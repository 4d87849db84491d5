"""Reference histograms for drift monitoring, built at training time. Pure numpy.

Bins: a feature with few distinct values (flags, codes, counts) gets one bin per value, so
a category that appears or vanishes is visible; a continuous one gets its deciles; the
score gets deciles plus finer tail bins (0.95, 0.99, 0.999) where decisions are made.
Counts are kept per UTC hour of event time because traffic differs by hour (fraud is
three times likelier at night here), and a short window covers only an hour or two.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streamer.model.metadata import ReferenceHistogram

MAX_CATEGORIES = 32
DECILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SCORE_QUANTILES = (*DECILES, 0.95, 0.99, 0.999)
CALENDAR_FEATURES = frozenset({"hour_of_day", "day_of_week", "is_night"})
"""Functions of event time alone: a window sees its own time, not the population's."""


def hours_of(event_time_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """UTC hour of day (0-23) of epoch-millisecond event times."""
    return np.asarray((event_time_ms // 3_600_000) % 24, dtype=np.int64)


def cuts_for(
    values: npt.NDArray[np.floating], quantiles: tuple[float, ...] = DECILES
) -> list[float]:
    """Bin cut points: every distinct value when there are few, else distinct quantiles."""
    finite = values[np.isfinite(values)]
    distinct = np.unique(finite)
    if distinct.size <= MAX_CATEGORIES:
        return [float(v) for v in distinct]
    return [float(v) for v in np.unique(np.quantile(finite, quantiles))]


def bin_counts(
    values: npt.NDArray[np.floating], hours: npt.NDArray[np.int64], cuts: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """``[24, len(cuts) + 1]`` counts of ``values`` by hour and bin (NaN joins the top bin)."""
    bins = cuts.size + 1
    index = np.searchsorted(cuts, values, side="right")
    return np.bincount(hours * bins + index, minlength=24 * bins).reshape(24, bins)


def reference_histogram(
    values: npt.NDArray[np.floating],
    event_time_ms: npt.NDArray[np.int64],
    *,
    quantiles: tuple[float, ...] = DECILES,
) -> ReferenceHistogram:
    """The reference of one column: cut points from all values, counts by hour."""
    cuts = np.asarray(cuts_for(values, quantiles), dtype=np.float64)
    by_hour = bin_counts(values, hours_of(event_time_ms), cuts)
    return ReferenceHistogram(
        cuts=tuple(cuts.tolist()),
        counts=tuple(int(c) for c in by_hour.sum(axis=0)),
        by_hour=tuple(tuple(int(c) for c in row) for row in by_hour),
    )
