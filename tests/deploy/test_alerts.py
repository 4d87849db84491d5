"""The chart's PrometheusRule: valid for the CRD, PromQL that parses, on metrics streamer
documents, scoped to this release's pods, with the thresholds the values set.

An alert on a misspelled metric never fires, which looks exactly like "all is well": each
expression is parsed (promql-parser, the Rust PromQL parser) and its metric names checked
against the metric table of docs/operations.md.
"""

from __future__ import annotations

import copy
from typing import Any

import promql_parser
import pytest

from tests.deploy.crds import crd_errors
from tests.deploy.tools import only, render, render_error
from tests.fixtures import dashboard as dash

ALERTS = {
    "StreamerConsumerLagGrowing",
    "StreamerDeadLetterRateHigh",
    "StreamerDegradedScoring",
    "StreamerEndToEndLatencyHigh",
    "StreamerNoOutput",
    "StreamerScoreDrift",
    "StreamerPartitionRewinds",
    "StreamerOutputsRefused",
    "StreamerVelocityWriteFailures",
    "StreamerModelSwapRefused",
    "StreamerShadowDisagreement",
    "StreamerInputDrift",
}


def _rules(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    rule = only(docs, "PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def _selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return found


def test_rule_is_off_by_default(default_docs: list[dict[str, Any]]) -> None:
    assert not [d for d in default_docs if d["kind"] == "PrometheusRule"]


def test_rule_has_every_alert(keda_docs: list[dict[str, Any]]) -> None:
    rules = _rules(keda_docs)
    assert set(rules) == ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name


def test_rule_is_valid_for_the_prometheus_operator_crd(keda_docs: list[dict[str, Any]]) -> None:
    rule = only(keda_docs, "PrometheusRule")
    assert crd_errors(rule) == []
    broken = copy.deepcopy(rule)
    broken["spec"]["groups"][0]["rules"][0]["for"] = "15 minutes"
    assert any("for" in e for e in crd_errors(broken))
    broken = copy.deepcopy(rule)
    broken["spec"]["groups"][0]["rules"][0]["alertt"] = broken["spec"]["groups"][0]["rules"][0].pop(
        "alert"
    )
    assert crd_errors(broken)


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_alert_queries_documented_metrics_of_this_release(
    keda_docs: list[dict[str, Any]], alert: str
) -> None:
    expr = _rules(keda_docs)[alert]["expr"]
    selectors = _selectors(expr)  # raises on PromQL that Prometheus would refuse
    assert selectors, expr
    documented = dash.documented_metrics()
    for selector in selectors:
        assert selector.name in documented, f"{alert}: {selector.name} is not in docs/operations.md"
        labels = {(m.name, m.value) for m in selector.matchers.matchers}
        # The ServiceMonitor scrapes the metrics Service: Prometheus labels job = its name.
        assert {("job", "fraud-streamer-metrics"), ("namespace", "payments")} <= labels, alert


def test_alert_job_label_is_the_scraped_service(keda_docs: list[dict[str, Any]]) -> None:
    service = only(keda_docs, "Service")["metadata"]["name"]
    monitor = only(keda_docs, "ServiceMonitor")["spec"]
    assert "jobLabel" not in monitor, "job would then come from a Service label"
    assert service == "fraud-streamer-metrics"


def test_the_promql_check_can_fail() -> None:
    with pytest.raises(ValueError, match="parenthesis"):
        _selectors("sum(rate(streamer_events_consumed_total[5m])")
    (selector,) = _selectors('rate(streamer_event_consumed_total{job="x"}[5m])')
    assert selector.name not in dash.documented_metrics()


def test_new_failure_metrics_have_alerts(keda_docs: list[dict[str, Any]]) -> None:
    rules = _rules(keda_docs)
    names = {alert: {s.name for s in _selectors(rule["expr"])} for alert, rule in rules.items()}
    assert names["StreamerPartitionRewinds"] == {"streamer_partition_rewinds_total"}
    assert names["StreamerOutputsRefused"] == {"streamer_outputs_refused_total"}
    assert names["StreamerScoreDrift"] == {"streamer_score_drift_psi"}
    assert "streamer_end_to_end_latency_seconds_bucket" in names["StreamerEndToEndLatencyHigh"]
    assert {"streamer_events_consumed_total", "streamer_events_scored_total"} <= names[
        "StreamerNoOutput"
    ]
    degraded = _selectors(rules["StreamerDegradedScoring"]["expr"])[0]
    assert ("status", "DEGRADED") in {(m.name, m.value) for m in degraded.matchers.matchers}


def test_model_upgrade_alerts_watch_the_model_metrics(keda_docs: list[dict[str, Any]]) -> None:
    rules = _rules(keda_docs)
    refused = rules["StreamerModelSwapRefused"]["expr"]
    assert {s.name for s in _selectors(refused)} == {"streamer_model_swaps_refused_total"}
    assert "offset 15m" in refused, "a pod's first refusal is a new series: increase() reads 0"
    shadow = _selectors(rules["StreamerShadowDisagreement"]["expr"])
    assert {s.name for s in shadow} == {"streamer_shadow_decisions_total"}
    matchers = [{(m.name, m.value) for m in s.matchers.matchers} for s in shadow]
    assert ("agreement", "disagree") in matchers[0], "the numerator counts disagreements"
    assert not any(name == "agreement" for name, _ in matchers[1]), "the denominator: all"
    drift = rules["StreamerInputDrift"]
    assert {s.name for s in _selectors(drift["expr"])} == {"streamer_drift_psi"}
    assert drift["expr"].endswith("> 0.25")
    assert drift["for"] == "15m"
    assert rules["StreamerShadowDisagreement"]["expr"].endswith("> 0.05")


def test_thresholds_and_labels_come_from_values(helm: str) -> None:
    docs = render(
        helm,
        "prometheusRule.enabled=true",
        "prometheusRule.thresholds.p99LatencySeconds=2",
        "prometheusRule.thresholds.lagMinimum=50",
        "prometheusRule.thresholds.noOutputFor=2m",
        "prometheusRule.thresholds.driftPsi=1",  # --set reads 0.4 as a string
        "prometheusRule.thresholds.driftFor=1h",
        "prometheusRule.thresholds.shadowDisagreementFor=2h",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "prometheusRule.alertLabels.team=payments",
    )
    rules = _rules(docs)
    assert rules["StreamerEndToEndLatencyHigh"]["expr"].endswith("> 2")
    assert rules["StreamerConsumerLagGrowing"]["expr"].endswith("> 50")
    assert rules["StreamerNoOutput"]["for"] == "2m"
    assert rules["StreamerInputDrift"]["expr"].endswith("> 1")
    assert rules["StreamerInputDrift"]["for"] == "1h"
    assert rules["StreamerShadowDisagreement"]["for"] == "2h"
    assert only(docs, "PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert all(r["labels"]["team"] == "payments" for r in rules.values())
    # Prometheus's own template syntax survives helm's rendering.
    assert "{{ $value" in rules["StreamerConsumerLagGrowing"]["annotations"]["description"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("prometheusRule.thresholds.degradedRatio=2",), "degradedRatio"),
        (("prometheusRule.thresholds.noOutputFor=five",), "noOutputFor"),
        (("prometheusRule.thresholds.shadowDisagreementRatio=1.5",), "shadowDisagreementRatio"),
        (("prometheusRule.thresholds.driftFor=soon",), "driftFor"),
        (("prometheusRule.treshold=1",), "additional properties 'treshold' not allowed"),
    ],
)
def test_bad_rule_values_are_refused(helm: str, sets: tuple[str, ...], message: str) -> None:
    assert message in render_error(helm, *sets)
