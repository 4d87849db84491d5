"""The Grafana dashboard: well formed, portable, and querying only documented metrics."""

from __future__ import annotations

import pytest

from tests.fixtures import dashboard as dash


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("rate(a_total[5m])", {"a_total"}),
        ('sum by (le) (rate(x_bucket{i=~"$instance"}[$__rate_interval]))', {"x_bucket"}),
        ("histogram_quantile(0.99, sum by (le, stage) (rate(s_bucket[1m])))", {"s_bucket"}),
        ('a{result="hit"} / on(instance) group_left(version) b_info', {"a", "b_info"}),
        ("sum(x) or vector(0)", {"x"}),
        ("label_values(m_info, instance)", {"m_info"}),
        ("max_over_time(g[1h] offset 1d) > 1e-4", {"g"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert dash.metric_names(expr) == names


def test_documented_metrics_are_read_from_the_operations_page_table() -> None:
    table = (
        "| `a_total` | counter | `x` | a |\n| `h_seconds` | histogram | | h |\n"
        "| `m_info` | info | `name` | m |\n| not a row |\n"
    )
    assert dash.documented_metrics(table) == {
        "a_total",
        "h_seconds_bucket",
        "h_seconds_sum",
        "h_seconds_count",
        "m_info",
    }
    documented = dash.documented_metrics()
    assert {"streamer_events_consumed_total", "streamer_score_bucket"} <= documented
    assert "streamer_score" not in documented, "a histogram is selected by its samples"


def test_dashboard_queries_only_documented_metrics() -> None:
    used = dash.used_metrics()
    unknown = {
        name: sorted(where) for name, where in used.items() if name not in dash.documented_metrics()
    }
    assert not unknown, f"the dashboard queries metrics streamer does not export: {unknown}"


@pytest.mark.parametrize(
    ("title", "metric"),
    [
        ("Throughput", "streamer_events_scored_total"),
        ("End-to-end latency", "streamer_end_to_end_latency_seconds_bucket"),
        ("Dead-letter rate by reason", "streamer_events_dead_lettered_total"),
        ("Consumer lag by partition", "streamer_consumer_lag"),
        ("Cache hit ratio", "streamer_feature_lookups_total"),
        ("Score distribution", "streamer_score_bucket"),
        ("Model version by replica", "streamer_model_info"),
        ("Decision share", "streamer_events_scored_total"),
        (
            "Degraded share",
            'streamer_feature_status_total{instance=~"$instance", status="DEGRADED"}',
        ),
        ("Delivery failures", "streamer_delivery_failures_total"),
        ("CPU", "process_cpu_seconds_total"),
        ("Memory", "process_resident_memory_bytes"),
        ("Scored by model version", "sum by (model_version) (rate(streamer_events_scored_total"),
        ("Model swaps and refusals", "streamer_model_swaps_refused_total"),
        ("Model swaps and refusals", "streamer_model_swaps_total"),
        ("Shadow disagreement rate", 'agreement="disagree"'),
        ("Shadow score difference", "streamer_shadow_score_difference_bucket"),
        ("Shadow failures", "streamer_shadow_failures_total"),
        ("Drift PSI by input", "max by (model_version, feature) (streamer_drift_psi"),
        ("Top reasons", "sum by (reason, decision) (rate(streamer_decision_reasons_total"),
        ("Transaction commit time", "streamer_transaction_commit_seconds_bucket"),
        ("Transactions", "streamer_transactions_total"),
        ("Transactions", "streamer_transaction_batches_count"),
    ],
)
def test_dashboard_has_the_required_panels(title: str, metric: str) -> None:
    matching = [p for p in dash.panels(dash.load()) if p["title"] == title]
    assert matching, f"no panel titled {title!r}"
    exprs = " ".join(t["expr"] for p in matching for t in p["targets"])
    assert metric in exprs


def test_dashboard_latency_panel_shows_p50_and_p99() -> None:
    (panel,) = [p for p in dash.panels(dash.load()) if p["title"] == "End-to-end latency"]
    exprs = [t["expr"] for t in panel["targets"]]
    assert any(e.startswith("histogram_quantile(0.5,") for e in exprs)
    assert any(e.startswith("histogram_quantile(0.99,") for e in exprs)


def test_dashboard_is_portable_and_well_formed() -> None:
    board = dash.load()
    assert board["uid"] == "streamer"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]] + [
        p["id"] for r in board["panels"] for p in r.get("panels", [])
    ]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
    for panel in dash.panels(board):
        # The data source is a variable, so the same JSON works in compose and on Kubernetes.
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
