"""``streamer monitor report``: performance per model version over an event-time range.

The range is widened to whole event-time hours (the state's buckets), and the report says
which range it covers. Every figure is computed from the stored join state, so two reports
of the same range agree however often the monitor restarted or replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.monitor.interner import Interner
from streamer.monitor.metrics import Measures, by_version
from streamer.monitor.records import HOUR_MS, joined_array
from streamer.monitor.state import JoinState


@dataclass(frozen=True)
class Window:
    """The joined events of an event-time range, and how many events were scored in it."""

    since_ms: int
    until_ms: int
    transaction_ids: list[str]
    joined: npt.NDArray[np.void]
    scored: dict[int, int]  # champion version id -> scored events


def hours_of(since_ms: int, until_ms: int) -> range:
    """The event-time hours that cover [since, until)."""
    return range(since_ms // HOUR_MS, -(-until_ms // HOUR_MS))


def read_window(state: JoinState, since_ms: int, until_ms: int) -> Window:
    """The window covering [since, until), widened to whole hours."""
    hours = hours_of(since_ms, until_ms)
    ids: list[str] = []
    values: list[bytes] = []
    for transaction_id, value in state.joined(hours):
        ids.append(transaction_id)
        values.append(value)
    return Window(
        hours.start * HOUR_MS,
        hours.stop * HOUR_MS,
        ids,
        joined_array(values),
        state.scored_counts(hours),
    )


def version_rows(window: Window, interner: Interner) -> list[dict[str, Any]]:
    """One JSON-ready row per (role, model version), champion versions first."""
    measured = by_version(window.joined)
    rows = [
        _row(role, interner.name("version", vid) or f"#{vid}", m, window.scored.get(vid))
        for (role, vid), m in sorted(measured.items())
    ]
    for vid, scored in sorted(window.scored.items()):  # scored, none labelled yet
        if ("champion", vid) not in measured:
            name = interner.name("version", vid) or f"#{vid}"
            rows.append(_row("champion", name, None, scored))
    return rows


def _row(role: str, key: str, m: Measures | None, scored: int | None) -> dict[str, Any]:
    name, _, version = key.rpartition("@")
    labelled = m.labelled if m else 0
    row: dict[str, Any] = {
        "model_name": name,
        "model_version": version,
        "role": role,
        "scored": scored if role == "champion" else None,
        "labelled": labelled,
        "unlabelled_share": (
            (scored - labelled) / scored if scored and role == "champion" else None
        ),
        "fraud": m.fraud if m else 0,
    }
    if m is None:
        return row | dict.fromkeys(("precision", "recall", "roc_auc", "pr_auc"))
    return row | {
        "precision": m.at_review.precision,
        "recall": m.at_review.recall,
        "precision_decline": m.at_decline.precision,
        "recall_decline": m.at_decline.recall,
        "roc_auc": m.roc_auc,
        "pr_auc": m.pr_auc,
        "flagged_fraud": m.at_review.tp,
        "flagged_legitimate": m.at_review.fp,
        "missed_fraud": m.at_review.fn,
        "passed_legitimate": m.at_review.tn,
        "declined_fraud": m.at_decline.tp,
        "declined_legitimate": m.at_decline.fp,
        "fraud_amount_caught": m.caught,
        "fraud_amount_missed": m.missed,
        "label_delay_days": m.delay_days,
    }


def report_json(window: Window, interner: Interner) -> dict[str, Any]:
    """``{"since", "until", "versions": [...]}`` (times as epoch millis)."""
    return {
        "since": window.since_ms,
        "until": window.until_ms,
        "versions": version_rows(window, interner),
    }


def render_table(report: dict[str, Any]) -> Any:
    """The report as a rich table (for people)."""
    from datetime import UTC, datetime

    from rich.table import Table

    def when(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")

    table = Table(
        title=f"Labelled events, event time {when(report['since'])} to "
        f"{when(report['until'])} UTC (flagged = REVIEW or DECLINE)"
    )
    columns = ("version", "role", "scored", "labelled", "unlabelled", "fraud", "precision",
               "recall", "recall@decline", "ROC-AUC", "PR-AUC", "fraud caught / missed",
               "delay p50/p90 d")  # fmt: skip
    for name in columns:
        table.add_column(name, justify="left" if name in ("version", "role") else "right")
    for row in report["versions"]:
        table.add_row(*_cells(row))
    return table


def _cells(row: dict[str, Any]) -> list[str]:
    def num(value: Any, pattern: str = "{:.3f}") -> str:
        return "-" if value is None else pattern.format(value)

    caught, missed = row.get("fraud_amount_caught", {}), row.get("fraud_amount_missed", {})
    money = ", ".join(
        f"{c} {caught.get(c, 0):,.0f} / {missed.get(c, 0):,.0f}" for c in sorted({*caught, *missed})
    )
    delay = row.get("label_delay_days") or {}
    return [
        f"{row['model_name']}@{row['model_version']}",
        row["role"],
        num(row["scored"], "{:,}"),
        f"{row['labelled']:,}",
        num(row["unlabelled_share"], "{:.1%}"),
        f"{row['fraud']:,}",
        num(row["precision"]),
        num(row["recall"]),
        num(row.get("recall_decline")),
        num(row["roc_auc"]),
        num(row["pr_auc"]),
        money or "-",
        f"{delay['p50']:.1f} / {delay['p90']:.1f}" if delay else "-",
    ]
