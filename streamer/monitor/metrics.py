"""Model performance on labelled events: pure functions of arrays, no I/O.

"Flagged" means the decision was REVIEW or DECLINE (``at="review"``), or DECLINE alone
(``at="decline"``). ROC-AUC is the Mann-Whitney statistic with tied scores counted half;
PR-AUC is average precision (the step-wise area scikit-learn's ``average_precision_score``
computes, without interpolation). Both are exact on the stored scores; ``tests/unit/
test_monitor_metrics.py`` holds them to scikit-learn's on random and tied data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streamer.features.reference import currency_exponent

Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
DAY_MS = 86_400_000
ALL_VERSIONS = -1
"""The version id under which ``by_version(overall=True)`` puts a role's versions together."""


def roc_auc(fraud: Bools, score: npt.ArrayLike) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    y = np.asarray(fraud, dtype=bool)
    positives, negatives = int(y.sum()), int(y.size - y.sum())
    if not positives or not negatives:
        return None
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    u = ranks[y].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def _average_ranks(values: Floats) -> Floats:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends, averaged
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def average_precision(fraud: Bools, score: npt.ArrayLike) -> float | None:
    """Average precision (area under the step-wise precision-recall curve); None when
    there is no fraud."""
    y = np.asarray(fraud, dtype=bool)
    if not y.any():
        return None
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]  # end of each distinct score
    tps = np.cumsum(y)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class Confusion:
    """Counts of flagged and missed fraud and legitimate events."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


def confusion(fraud: Bools, flagged: Bools) -> Confusion:
    y, f = np.asarray(fraud, dtype=bool), np.asarray(flagged, dtype=bool)
    tp = int(np.sum(y & f))
    fp = int(np.sum(~y & f))
    fn = int(np.sum(y & ~f))
    return Confusion(tp, fp, fn, int(y.size) - tp - fp - fn)


@dataclass(frozen=True)
class Measures:
    """Everything measured for one model version (or shadow) over one window."""

    labelled: int
    fraud: int
    at_review: Confusion
    at_decline: Confusion
    roc_auc: float | None
    pr_auc: float | None
    caught: dict[str, float] = field(default_factory=dict)  # fraud amount by currency
    missed: dict[str, float] = field(default_factory=dict)
    delay_days: dict[str, float] = field(default_factory=dict)  # p50, p90, max


def measure(
    fraud: Bools,
    score: npt.ArrayLike,
    decision: npt.NDArray[np.integer],
    amount_minor: npt.NDArray[np.int64],
    currency: npt.NDArray[np.bytes_],
    delay_ms: npt.NDArray[np.int64],
) -> Measures:
    """The measures of one version from its labelled events; ``decision`` holds codes
    (0 APPROVE, 1 REVIEW, 2 DECLINE)."""
    y = np.asarray(fraud, dtype=bool)
    flagged = np.asarray(decision) >= 1
    return Measures(
        labelled=int(y.size),
        fraud=int(y.sum()),
        at_review=confusion(y, flagged),
        at_decline=confusion(y, np.asarray(decision) == 2),
        roc_auc=roc_auc(y, score),
        pr_auc=average_precision(y, score),
        caught=amounts(amount_minor[y & flagged], currency[y & flagged]),
        missed=amounts(amount_minor[y & ~flagged], currency[y & ~flagged]),
        delay_days=delay_quantiles(delay_ms),
    )


def amounts(
    amount_minor: npt.NDArray[np.int64], currency: npt.NDArray[np.bytes_]
) -> dict[str, float]:
    """Sum of amounts per currency in major units (minor units are not comparable)."""
    totals: dict[str, float] = {}
    for code in np.unique(currency):
        name = bytes(code).decode("ascii", "replace")
        minor = int(amount_minor[currency == code].sum())
        totals[name] = minor / 10 ** currency_exponent(name)
    return totals


def delay_quantiles(delay_ms: npt.NDArray[np.int64]) -> dict[str, float]:
    """Label delay (label time minus event time) in days: median, 90th percentile, max."""
    if not delay_ms.size:
        return {}
    days = np.asarray(delay_ms, dtype=np.float64) / DAY_MS
    p50, p90 = np.quantile(days, [0.5, 0.9])
    return {"p50": float(p50), "p90": float(p90), "max": float(days.max())}


def by_version(
    joined: npt.NDArray[np.void], *, overall: bool = False
) -> dict[tuple[str, int], Measures]:
    """Measures per (role, version id) of joined events (``records.JOINED``): the
    scoring model's by its version (role ``champion``), the shadow's by its own
    (``shadow``, only events that carried a shadow score). With ``overall``, also every
    version of a role together, under the version id ``ALL_VERSIONS`` (what an alert
    compares a new version with)."""
    fraud = joined["label"] <= 1  # FRAUD, CHARGEBACK
    delay = joined["label_time"] - joined["event_time"]
    champion = joined["decisions"] & 3
    shadow = (joined["decisions"] >> 2).astype(np.int16) - 1
    out: dict[tuple[str, int], Measures] = {}
    for role, versions, scores, decisions in (
        ("champion", joined["version"], joined["score"], champion),
        ("shadow", joined["shadow_version"], joined["shadow_score"], shadow),
    ):
        for version in (
            [ALL_VERSIONS, *np.unique(versions).tolist()] if overall else np.unique(versions)
        ):
            rows = versions == version if version != ALL_VERSIONS else versions > 0
            if role == "shadow":
                rows &= decisions >= 0
            if not version or not rows.any():
                continue
            out[(role, int(version))] = measure(
                fraud[rows],
                scores[rows],
                decisions[rows],
                joined["amount_minor"][rows],
                joined["currency"][rows],
                delay[rows],
            )
    return out
