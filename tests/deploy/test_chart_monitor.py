"""The model monitor in the chart: its own Deployment, consumer group, metrics Service and
ServiceMonitor, apart from the stream's; its alerts are valid PromQL on documented monitor
metrics scraped from its own Service; its dashboard row queries the same metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import promql_parser
import pytest

from tests.deploy.crds import validate_all
from tests.deploy.tools import render, render_error
from tests.fixtures import dashboard as dash
from tests.fixtures.promtool import promtool, rule_test, series_name

ON = ("monitor.enabled=true", "serviceMonitor.enabled=true", "prometheusRule.enabled=true")
MONITOR_ALERTS = {"StreamerModelRecallDrop", "StreamerModelPrAucDrop"}


@pytest.fixture(scope="module")
def docs(helm: str) -> list[dict[str, Any]]:
    return render(helm, *ON)


def _named(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_the_monitor_is_its_own_deployment_group_and_scrape(docs: list[dict[str, Any]]) -> None:
    validate_all(docs)
    deployments = _named(docs, "Deployment")
    monitor, stream = deployments["fraud-streamer-monitor"], deployments["fraud-streamer"]
    (container,) = monitor["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["monitor", "run"]
    assert "--window-hours=168" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STREAMER_MONITOR_GROUP_ID"] == "fraud-streamer-monitor"
    assert env["STREAMER_LABELS_TOPIC"] == "transactions.labels"
    assert env["STREAMER_LABEL_HORIZON_DAYS"] == "120"
    assert container["envFrom"] == stream["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    monitor_pods = monitor["spec"]["template"]["metadata"]["labels"]
    assert _selects(monitor["spec"]["selector"]["matchLabels"], monitor_pods)
    assert not _selects(stream["spec"]["selector"]["matchLabels"], monitor_pods)

    services = _named(docs, "Service")
    ours = services["fraud-streamer-monitor-metrics"]
    assert _selects(ours["spec"]["selector"], monitor_pods)
    assert not _selects(services["fraud-streamer-metrics"]["spec"]["selector"], monitor_pods)
    monitors = _named(docs, "ServiceMonitor")
    scrapes = {
        name: [
            s
            for s, svc in services.items()
            if _selects(m["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
        ]
        for name, m in monitors.items()
    }
    assert scrapes == {  # each Service scraped once: no duplicated series
        "fraud-streamer": ["fraud-streamer-metrics"],
        "fraud-streamer-monitor": ["fraud-streamer-monitor-metrics"],
    }


def test_no_monitor_unless_enabled(default_docs: list[dict[str, Any]], helm: str) -> None:
    assert not [d for d in default_docs if "monitor" in d["metadata"]["name"]]
    rules = [
        d for d in render(helm, "prometheusRule.enabled=true") if d["kind"] == "PrometheusRule"
    ]
    groups = [g["name"] for d in rules for g in d["spec"]["groups"]]
    assert not [g for g in groups if "model-performance" in g]


def _alerts(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


def _selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return found


@pytest.mark.parametrize("alert", sorted(MONITOR_ALERTS))
def test_alerts_compare_this_window_with_the_last_on_the_monitors_series(
    docs: list[dict[str, Any]], alert: str
) -> None:
    rule = _alerts(docs)[alert]
    selectors = _selectors(rule["expr"])
    documented = dash.documented_metrics()
    windows = set()
    for selector in selectors:
        assert selector.name in documented, selector.name
        labels = {(m.name, m.value) for m in selector.matchers.matchers}
        assert {("job", "fraud-streamer-monitor-metrics"), ("namespace", "payments")} <= labels
        windows |= {v for k, v in labels if k == "window"}
    assert windows == {"current", "previous"}
    previous = [
        s
        for s in selectors
        if ("window", "previous") in {(m.name, m.value) for m in s.matchers.matchers}
    ]
    assert ("model_version", "all") in {(m.name, m.value) for m in previous[0].matchers.matchers}
    assert "streamer_monitor_fraud_events" in {s.name for s in selectors}, (
        "a floor of labelled fraud"
    )
    assert rule["labels"]["severity"] == "warning"
    assert rule["annotations"]["summary"]
    assert "{{ $labels.model_version }}" in rule["annotations"]["summary"]


def test_alert_thresholds_come_from_values(helm: str) -> None:
    docs = render(
        helm,
        *ON,
        "prometheusRule.thresholds.modelMinLabelledFraud=7",
        "prometheusRule.thresholds.modelDropFor=3h",
    )
    recall = _alerts(docs)["StreamerModelRecallDrop"]
    assert "(1 - 0.2) *" in recall["expr"]  # --set reads 0.5 as a string: the default
    assert recall["expr"].rstrip().endswith(">= 7)")
    assert recall["for"] == "3h"
    assert "(1 - 0.2) *" in _alerts(docs)["StreamerModelPrAucDrop"]["expr"]
    assert "(1 - 0.2)" in _alerts(render(helm, *ON))["StreamerModelRecallDrop"]["expr"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("prometheusRule.thresholds.modelRecallDrop=1.5",), "modelRecallDrop"),
        (("prometheusRule.thresholds.modelDropFor=soon",), "modelDropFor"),
        (("monitor.windowHours=0",), "windowHours"),
        (("monitor.labelsTopic=",), "labelsTopic"),
        (("settings.labels_topic=x",), "has a value of its own"),
    ],
)
def test_bad_monitor_values_are_refused(helm: str, sets: tuple[str, ...], message: str) -> None:
    assert message in render_error(helm, *sets)


@pytest.mark.parametrize(
    ("title", "metric"),
    [
        ("Recall by model version", "streamer_monitor_recall"),
        ("Precision by model version", "streamer_monitor_precision"),
        ("PR-AUC and ROC-AUC", "streamer_monitor_pr_auc"),
        ("PR-AUC and ROC-AUC", "streamer_monitor_roc_auc"),
        ("Fraud amount caught vs missed", "streamer_monitor_fraud_amount"),
        ("Unlabelled share", "streamer_monitor_unlabelled_share"),
        ("Label delay", "streamer_monitor_label_delay_days"),
    ],
)
def test_the_dashboard_has_a_model_performance_row(title: str, metric: str) -> None:
    board = dash.load()
    rows = [p["title"] for p in board["panels"] if p.get("type") == "row"]
    assert "Model performance on late labels (streamer monitor)" in rows
    (panel,) = [p for p in dash.panels(board) if p["title"] == title]
    assert metric in " ".join(t["expr"] for t in panel["targets"])


GROUP = "fraud-streamer.model-performance"
SEL = {"job": "fraud-streamer-monitor-metrics", "namespace": "payments"}


def _monitor_series(
    recall: dict[tuple[str, str], float], fraud: dict[str, float], pr_auc: float = 0.6
) -> dict[str, float]:
    """Gauges as the monitor exports them: recall (and PR-AUC) by (version, window)."""
    series = {}
    for (version, window), value in recall.items():
        labels = {**SEL, "model_version": version, "role": "champion", "window": window}
        series[series_name("streamer_monitor_recall", {**labels, "threshold": "review"})] = value
        series[series_name("streamer_monitor_pr_auc", labels)] = pr_auc
    for version, n in fraud.items():
        labels = {**SEL, "model_version": version, "role": "champion", "window": "current"}
        series[series_name("streamer_monitor_fraud_events", labels)] = n
    return series


DEGRADED = {("9", "current"): 0.15, ("2", "current"): 0.64, ("all", "current"): 0.55}
BEFORE = {("2", "previous"): 0.65, ("all", "previous"): 0.65}


@pytest.fixture(scope="module")
def rule(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    return found


@pytest.mark.parametrize(
    ("minutes", "fraud_of_9", "expected"),
    [
        pytest.param(70, 50, [{"model_version": "9"}], id="fires-for-the-degraded-version-only"),
        pytest.param(50, 50, [], id="not-before-its-for-duration"),
        pytest.param(70, 10, [], id="not-on-too-few-labelled-fraud"),
    ],
)
def test_the_recall_alert_fires_in_a_rule_evaluation(
    rule: dict[str, Any],
    tmp_path: Path,
    minutes: int,
    fraud_of_9: float,
    expected: list[dict[str, str]],
) -> None:
    series = _monitor_series({**DEGRADED, **BEFORE}, {"9": fraud_of_9, "2": 60, "all": 110})
    done = rule_test(
        promtool(),
        rule,
        GROUP,
        series,
        minutes=minutes,
        alert="StreamerModelRecallDrop",
        expected=[{"severity": "warning", "role": "champion", **e} for e in expected],
        tmp=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_pr_auc_alert_fires_in_a_rule_evaluation(rule: dict[str, Any], tmp_path: Path) -> None:
    series = _monitor_series({**DEGRADED, **BEFORE}, {"9": 50, "2": 60, "all": 110})
    nine = {**SEL, "model_version": "9", "role": "champion", "window": "current"}
    series[series_name("streamer_monitor_pr_auc", nine)] = 0.15
    done = rule_test(
        promtool(),
        rule,
        GROUP,
        series,
        minutes=70,
        alert="StreamerModelPrAucDrop",
        expected=[{"severity": "warning", "role": "champion", "model_version": "9"}],
        tmp=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
