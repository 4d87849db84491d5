"""Reason codes: per-input contributions to the margin in, the top three reasons out. Pure.

A flagged decision says why: the model's inputs are grouped into codes (``REASON_TABLE``,
versioned by ``TABLE_VERSION``), a code's contribution is the sum of its inputs' exact
TreeSHAP contributions (``streamer.model.explainer``), and the three largest positive codes
go out with the decision, each with a sentence made of the event's own input values (the
row of the model's input matrix that was scored). Inputs on the deny-list never count:
their contributions are dropped before grouping, so no code can rest on them.

To add a code: add a ``ReasonCode`` to ``REASON_TABLE`` naming its inputs and its sentence,
bump ``TABLE_VERSION``, and list it in docs/reasons.md. Every model input must belong to
exactly one code (tests/unit/test_reasons.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from streamer.errors import ConfigError
from streamer.features.engineering import FEATURE_NAMES

TABLE_VERSION = "1"
TOP = 3
Mode = Literal["flagged", "all", "off"]
MODES: tuple[Mode, ...] = ("flagged", "all", "off")
Values = Mapping[str, float]
TIMES = "\u00d7"  # the multiplication sign, as in the AMOUNT_SPIKE sentence
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class ReasonCode:
    """A code, the model inputs it stands for, and its sentence from the event's values."""

    code: str
    features: tuple[str, ...]
    text: Callable[[Values], str]


def _yes(v: float) -> bool:
    return v >= 0.5


REASON_TABLE: tuple[ReasonCode, ...] = (
    ReasonCode(
        "VELOCITY_1H",
        ("txn_count_1h",),
        lambda v: f"{v['txn_count_1h']:.0f} transactions in the last hour",
    ),
    ReasonCode(
        "VELOCITY_24H",
        ("txn_count_24h", "distinct_merchants_24h"),
        lambda v: (
            f"{v['txn_count_24h']:.0f} transactions at {v['distinct_merchants_24h']:.0f} "
            "merchants in the last 24 hours"
        ),
    ),
    ReasonCode(
        "VELOCITY_7D",
        ("txn_count_7d",),
        lambda v: f"{v['txn_count_7d']:.0f} transactions in the last 7 days",
    ),
    ReasonCode(
        "RAPID_SUCCESSION",
        ("seconds_since_last_txn",),
        lambda v: f"{v['seconds_since_last_txn']:.0f} s after the card's previous transaction",
    ),
    ReasonCode(
        "AMOUNT_SPIKE",
        ("amount_ratio", "amount_zscore", "amount_vs_max"),
        lambda v: (
            f"{v['amount_ratio']:.1f}{TIMES} this card's 30-day average "
            f"({v['amount_vs_max']:.1f}{TIMES} its 30-day maximum)"
        ),
    ),
    ReasonCode("HIGH_AMOUNT", ("amount", "log_amount"), lambda v: f"amount {v['amount']:,.2f}"),
    ReasonCode(
        "MERCHANT_AMOUNT",
        ("amount_vs_merchant_mean",),
        lambda v: f"{v['amount_vs_merchant_mean']:.1f}{TIMES} this merchant's average amount",
    ),
    ReasonCode(
        "FOREIGN_MERCHANT",
        ("is_foreign",),
        lambda v: (
            "merchant outside the card's home country"
            if _yes(v["is_foreign"])
            else "merchant in the card's home country"
        ),
    ),
    ReasonCode(
        "COUNTRY_CHANGE",
        ("country_changed",),
        lambda v: (
            "country differs from the card's previous transaction"
            if _yes(v["country_changed"])
            else "same country as the card's previous transaction"
        ),
    ),
    ReasonCode(
        "CARD_NOT_PRESENT",
        ("card_present", "channel", "entry_mode"),
        lambda v: "card present" if _yes(v["card_present"]) else "card not present",
    ),
    ReasonCode(
        "AUTHENTICATION",
        ("three_ds",),
        lambda v: {1.0: "3-D Secure passed", 0.0: "3-D Secure failed"}.get(
            v["three_ds"], "no 3-D Secure"
        ),
    ),
    ReasonCode(
        "NO_DEVICE",
        ("has_device",),
        lambda v: (
            "device fingerprint present" if _yes(v["has_device"]) else "no device fingerprint"
        ),
    ),
    ReasonCode(
        "NEW_CARD", ("card_age_days",), lambda v: f"card issued {v['card_age_days']:.0f} days ago"
    ),
    ReasonCode(
        "RISKY_MERCHANT",
        ("merchant_risk_score", "merchant_chargeback_rate", "merchant_fraud_rate"),
        lambda v: (
            f"merchant risk score {v['merchant_risk_score']:.2f}, "
            f"fraud rate {v['merchant_fraud_rate']:.2%}"
        ),
    ),
    ReasonCode(
        "SMALL_MERCHANT",
        ("merchant_txn_count_30d",),
        lambda v: f"merchant with {v['merchant_txn_count_30d']:.0f} transactions in 30 days",
    ),
    ReasonCode(
        "RISKY_CATEGORY",
        ("mcc", "mcc_risky"),
        lambda v: (
            f"merchant category {v['mcc']:.0f}" + (" (high risk)" if _yes(v["mcc_risky"]) else "")
        ),
    ),
    ReasonCode(
        "TIME_OF_DAY",
        ("hour_of_day", "is_night"),
        lambda v: f"at {v['hour_of_day']:02.0f}:00 UTC",
    ),
    ReasonCode(
        "DAY_OF_WEEK", ("day_of_week",), lambda v: f"on a {_DAYS[int(v['day_of_week']) % 7]}"
    ),
    ReasonCode(
        "RECURRING",
        ("is_recurring",),
        lambda v: "recurring payment" if _yes(v["is_recurring"]) else "not a recurring payment",
    ),
)
CODES = {reason.code: reason for reason in REASON_TABLE}


def reason_settings(mode: Mode, deny: str) -> ReasonSettings:
    """The settings' reasons (STREAMER_REASONS, STREAMER_REASONS_DENY), a deny-list naming
    an input no model has refused: a typo would otherwise let a denied input through."""
    names = frozenset(name.strip() for name in deny.split(",") if name.strip())
    unknown = sorted(names - set(FEATURE_NAMES))
    if unknown:
        raise ConfigError(
            f"STREAMER_REASONS_DENY names no model input: {', '.join(unknown)}; "
            "use input names as in docs/reasons.md"
        )
    return ReasonSettings(mode, names)


class ReasonBuilder:
    """Reasons for one model's inputs: the grouping matrix is built once per model."""

    def __init__(self, feature_names: Sequence[str], deny: Iterable[str] = ()) -> None:
        self.names = tuple(feature_names)
        denied = frozenset(deny)
        at = {name: j for j, name in enumerate(self.names)}
        self.codes = [r for r in REASON_TABLE if any(f in at for f in r.features)]
        self._members = [
            np.array([at[f] for f in r.features if f in at and f not in denied], dtype=np.intp)
            for r in self.codes
        ]

    def _by_code(self, contributions: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``[n, codes]`` sums, added input by input in table order: the same bits for a row
        whatever the batch around it (a matrix product's summation order depends on the
        shape, so the stream and score-file would differ in the last bit)."""
        by_code = np.zeros((contributions.shape[0], len(self.codes)), dtype=np.float64)
        for k, members in enumerate(self._members):
            for j in members.tolist():
                by_code[:, k] += contributions[:, j]
        return by_code

    def _best_inputs(self, contributions: npt.NDArray[np.float64]) -> list[list[int]]:
        """``[n][codes]``: each code's input that contributed most (the first of equals;
        -1 for a code whose inputs are all denied, whose total is 0 and never a reason),
        for the whole batch at once rather than a row at a time."""
        best = np.full((contributions.shape[0], len(self.codes)), -1, dtype=np.intp)
        for k, members in enumerate(self._members):
            if members.size:
                best[:, k] = members[np.argmax(contributions[:, members], axis=1)]
        return best.tolist()

    def reasons(
        self, contributions: npt.NDArray[np.float64], values: npt.NDArray[np.float32]
    ) -> list[list[dict[str, Any]]]:
        """For each row: up to ``TOP`` reasons, largest positive code contribution first.

        ``contributions`` is ``[n, width (+ 1 base column, ignored)]``; ``values`` the
        scored input rows. Each reason: ``code``, ``feature`` (the code's input that
        contributed most), ``value`` (that input's value), ``contribution`` (the code's
        summed contribution to the margin, in log-odds) and ``text``."""
        by_code = self._by_code(contributions)
        order = np.argsort(-by_code, axis=1, kind="stable")[:, :TOP].tolist()
        totals = by_code.tolist()
        best = self._best_inputs(contributions)
        rows: list[list[dict[str, Any]]] = []
        for i, row in enumerate(values.astype(np.float64).tolist()):
            row_values = _Filled(zip(self.names, row, strict=True))
            out = []
            for k in order[i]:
                total = totals[i][k]
                if total <= 0.0:
                    break
                name = self.names[best[i][k]]
                text = self.codes[k].text(row_values)
                out.append(
                    {
                        "code": self.codes[k].code,
                        "feature": name,
                        "value": row_values[name],
                        "contribution": total,
                        "text": text,
                    }
                )
            rows.append(out)
        return rows


class _Filled(dict[str, float]):
    """The row's values; an input this model lacks reads as NaN rather than failing."""

    def __missing__(self, key: str) -> float:
        return float("nan")


def explained_rows(mode: Mode, decisions: npt.NDArray[np.int8]) -> npt.NDArray[np.intp]:
    """Which scored rows get reasons: REVIEW and DECLINE (``flagged``), all, or none."""
    if mode == "off":
        return np.empty(0, dtype=np.intp)
    if mode == "all":
        return np.arange(decisions.size, dtype=np.intp)
    return np.flatnonzero(decisions > 0)


class Contributions(Protocol):
    """An explainer: per-input contributions to the margin, base value last."""

    def contributions(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]: ...


@dataclass(frozen=True)
class ReasonSettings:
    """Which decisions get reasons (STREAMER_REASONS) and the inputs that never may be one
    (STREAMER_REASONS_DENY)."""

    mode: Mode = "flagged"
    deny: frozenset[str] = frozenset()


class Reasons:
    """The kernel's ``reasons`` column: reasons for the rows ``mode`` picks, null elsewhere
    (and everywhere when the model has no explainer: a version without one has no reasons)."""

    def __init__(self, settings: ReasonSettings | None = None) -> None:
        self.settings = settings or ReasonSettings()
        self._builder: ReasonBuilder | None = None

    def column(
        self,
        explainer: Contributions | None,
        names: Sequence[str],
        matrix: npt.NDArray[np.float32],
        decisions: npt.NDArray[np.int8],
    ) -> list[Any] | tuple[Any]:
        """The column: a list aligned with ``decisions``, or ``(None,)`` (all null)."""
        rows = self.rows(explainer, decisions)
        if explainer is None or rows.size == 0:
            return (None,)
        picked = matrix[rows]
        return self.column_of(names, rows, picked, explainer.contributions(picked), decisions.size)

    def rows(
        self, explainer: Contributions | None, decisions: npt.NDArray[np.int8]
    ) -> npt.NDArray[np.intp]:
        """The rows that get reasons (none without an explainer)."""
        if explainer is None:
            return np.empty(0, dtype=np.intp)
        return explained_rows(self.settings.mode, decisions)

    def column_of(
        self,
        names: Sequence[str],
        rows: npt.NDArray[np.intp],
        picked: npt.NDArray[np.float32],
        contributions: npt.NDArray[np.float64],
        n: int,
    ) -> list[Any]:
        """``column`` from the ``contributions`` of ``picked`` (the ``rows`` of the
        model's input), ``n`` rows long: a caller may run the explainer elsewhere."""
        builder = self._builder
        if builder is None or builder.names != tuple(names):  # a swap to other inputs
            builder = self._builder = ReasonBuilder(names, self.settings.deny)
        found = builder.reasons(contributions, picked)
        column: list[list[dict[str, Any]] | None] = [None] * n
        for row, reasons in zip(rows.tolist(), found, strict=True):
            column[row] = reasons
        return column
