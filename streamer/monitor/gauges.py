"""The monitor's Prometheus metrics: performance gauges per model version and window,
recomputed from the stored join state (so a restarted monitor shows the same figures),
and counters of what this process consumed.

Windows are by event time: ``current`` is the last ``window`` (whole hours up to now),
``previous`` the one before it. ``model_version="all"`` holds every version of a role
together, so an alert can compare a version that is new this window with what the
previous window's versions did.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from streamer.monitor.metrics import ALL_VERSIONS, Measures, by_version
from streamer.monitor.report import read_window
from streamer.monitor.state import JoinState

WINDOWS = ("current", "previous")


class MonitorMetrics:
    """Gauges and counters on ``registry``; ``refresh`` recomputes the gauges."""

    def __init__(self, registry: CollectorRegistry) -> None:
        per_version = ["model_version", "role", "window"]
        at = [*per_version, "threshold"]

        def gauge(name: str, doc: str, labels: list[str]) -> Gauge:
            return Gauge(f"streamer_monitor_{name}", doc, labels, registry=registry)

        self.messages = Counter(
            "streamer_monitor_messages_total",
            "Messages the monitor consumed, by topic (scored, labels) and result",
            ["topic", "result"],
            registry=registry,
        )
        self.precision = gauge("precision", "Precision of flagged events (labelled)", at)
        self.recall = gauge("recall", "Recall of labelled fraud", at)
        self.roc_auc = gauge("roc_auc", "ROC-AUC on labelled events", per_version)
        self.pr_auc = gauge("pr_auc", "PR-AUC (average precision) on labelled events", per_version)
        self.labelled = gauge("labelled_events", "Labelled events in the window", per_version)
        self.fraud = gauge("fraud_events", "Labelled fraud in the window", per_version)
        self.amount = gauge(
            "fraud_amount",
            "Fraud amount in major units, caught (flagged) or missed",
            [*per_version, "outcome", "currency"],
        )
        self.unlabelled = gauge(
            "unlabelled_share",
            "Share of scored events without a label",
            ["model_version", "window"],
        )
        self.delay = gauge(
            "label_delay_days", "Label delay quantiles in days", ["window", "quantile"]
        )
        self.refreshed = gauge("refresh_timestamp_seconds", "When the gauges were computed", [])
        self._gauges: tuple[Gauge, ...] = (self.precision, self.recall, self.roc_auc)
        self._gauges += (self.pr_auc, self.labelled, self.fraud, self.amount)
        self._gauges += (self.unlabelled, self.delay)

    def refresh(self, state: JoinState, now_ms: int, window_ms: int) -> None:
        """Recompute every gauge for the current and previous windows from ``state``."""
        computed = []
        for name, end in (("current", now_ms), ("previous", now_ms - window_ms)):
            window = read_window(state, end - window_ms, end)
            computed.append((name, window, by_version(window.joined, overall=True)))
        for g in self._gauges:
            g.clear()
        for name, window, measured in computed:
            for (role, vid), m in measured.items():
                version = self._version(state, vid)
                self._set(m, version, role, name)
                if role == "champion" and vid == ALL_VERSIONS:
                    for quantile, days in m.delay_days.items():
                        self.delay.labels(name, quantile).set(days)
            for vid, scored in window.scored.items():
                labelled = measured.get(("champion", vid))
                n = labelled.labelled if labelled else 0
                self.unlabelled.labels(self._version(state, vid), name).set((scored - n) / scored)
        self.refreshed.set(now_ms / 1000)

    @staticmethod
    def _version(state: JoinState, vid: int) -> str:
        if vid == ALL_VERSIONS:
            return "all"
        name = state.interner.name("version", vid) or f"#{vid}"
        return name.rpartition("@")[2]

    def _set(self, m: Measures, version: str, role: str, window: str) -> None:
        labels = (version, role, window)
        for threshold, c in (("review", m.at_review), ("decline", m.at_decline)):
            _maybe(self.precision.labels(*labels, threshold).set, c.precision)
            _maybe(self.recall.labels(*labels, threshold).set, c.recall)
        _maybe(self.roc_auc.labels(*labels).set, m.roc_auc)
        _maybe(self.pr_auc.labels(*labels).set, m.pr_auc)
        self.labelled.labels(*labels).set(m.labelled)
        self.fraud.labels(*labels).set(m.fraud)
        for outcome, totals in (("caught", m.caught), ("missed", m.missed)):
            for currency, amount in totals.items():
                self.amount.labels(*labels, outcome, currency).set(amount)


def _maybe(setter: Callable[[float], None], value: float | None) -> None:
    """Set a gauge only when the value is defined (no fraud: no recall, not 0)."""
    if value is not None:
        setter(value)
