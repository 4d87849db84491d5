"""What the gate's report and table tell a reader: absolute shares, numeric bounds that
agree with the verdict, and the specs as they were given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from streamer.cli.gate import _table
from streamer.model.gate import Bounds, GateReport, Replay, report
from streamer.model.metadata import LoadedModel
from streamer.model.registry import load_model

MODELS = Path(__file__).resolve().parents[2] / "models"
OLD_KEYS = {"passed", "created_at", "events", "candidate", "champion", "checks"}
OLD_CHECK_KEYS = {"name", "passed", "value", "bound", "detail"}


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("fraud-gbt@2", MODELS)


def _replay(approve: int, review: int, decline: int, ms: float = 2.0) -> Replay:
    decisions = ["APPROVE"] * approve + ["REVIEW"] * review + ["DECLINE"] * decline
    return Replay(decisions=np.asarray(decisions), batch_ms=(ms,) * 20)


def _holds(value: float, limit: float, kind: str) -> bool:
    if kind == "min":
        return value >= limit
    if kind == "max":
        return value <= limit
    return abs(value) <= limit


def test_the_json_has_absolute_shares_and_numeric_bounds(
    model: LoadedModel, tmp_path: Path
) -> None:
    done = report(
        ("models:/fraud-gbt/2", model),
        ("models:/fraud-gbt@champion", model),
        (_replay(930, 61, 9), _replay(900, 79, 21)),
        Bounds(),
    )
    done.write(tmp_path / "gate.json")
    written = json.loads((tmp_path / "gate.json").read_text())
    assert set(written) >= OLD_KEYS
    assert all(set(check) >= OLD_CHECK_KEYS for check in written["checks"])
    assert written["rates"] == {
        "candidate": {"review": 0.061, "decline": 0.009},
        "champion": {"review": 0.079, "decline": 0.021},
    }
    limits = {c["name"]: (c["limit"], c["limit_kind"]) for c in written["checks"]}
    assert limits["signature"] == (None, None)
    assert limits["decision_agreement"] == (0.95, "min")
    assert limits["review_rate_change"] == (pytest.approx(0.01975), "max_abs")  # 0.25 x 7.9%
    assert limits["decline_rate_change"] == (pytest.approx(0.00525), "max_abs")
    assert limits["p99_batch_ms"] == (50.0, "max")
    roc = model.metadata.metrics["roc_auc"]
    assert limits["roc_auc"] == (pytest.approx(roc - 0.005), "min")
    assert GateReport.read(tmp_path / "gate.json") == done


def test_a_report_written_before_shares_were_recorded_still_reads(
    model: LoadedModel, tmp_path: Path
) -> None:
    done = report(("fraud-gbt@2", model), ("fraud-gbt@2", model), (_replay(9, 1, 0),) * 2, Bounds())
    old = done.model_dump(mode="json", exclude={"rates"})
    for check in old["checks"]:
        del check["limit"], check["limit_kind"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    read = GateReport.read(tmp_path / "old.json")
    assert read.rates is None
    assert read.passed == done.passed


counts = st.tuples(
    st.integers(0, 2000), st.integers(0, 300), st.integers(0, 100), st.floats(0.1, 120)
).filter(lambda t: sum(t[:3]) > 0)


@settings(max_examples=200, deadline=None)
@given(cand=counts, champ=counts)
def test_every_numeric_bound_agrees_with_the_verdict(
    model: LoadedModel, cand: tuple[int, int, int, float], champ: tuple[int, int, int, float]
) -> None:
    """A machine reading ``value`` against ``limit`` reaches the gate's own verdict."""
    size = min(sum(cand[:3]), sum(champ[:3]))
    new, old = (_replay(*cand), _replay(*champ))
    runs = (  # the same number of events on both sides
        Replay(new.decisions[:size], new.batch_ms),
        Replay(old.decisions[:size], old.batch_ms),
    )
    done = report(("fraud-gbt@2", model), ("fraud-gbt@1", model), runs, Bounds())
    for check in done.checks:
        if check.limit is None:
            continue
        assert check.limit_kind is not None
        assert isinstance(check.value, float)
        assert _holds(check.value, check.limit, check.limit_kind) == check.passed, check
    assert done.rates is not None
    assert done.rates.candidate.review == pytest.approx(runs[0].rate("REVIEW"), abs=1e-6)
    assert done.rates.champion.decline == pytest.approx(runs[1].rate("DECLINE"), abs=1e-6)


def _title(result: GateReport) -> str:
    console = Console(width=200, record=True)
    console.print(_table(result))
    return console.export_text().splitlines()[0].strip()


def test_the_table_title_uses_the_specs_as_given(model: LoadedModel) -> None:
    run = _replay(930, 61, 9)
    done = report(
        ("models:/fraud-gbt/2", model), ("fraud-gbt@champion", model), (run, run), Bounds()
    )
    assert _title(done) == (
        "models:/fraud-gbt/2 vs fraud-gbt@champion (version 2) on 1000 events: PASS"
    )
    console = Console(width=200, record=True)
    console.print(_table(done))
    assert "REVIEW 6.10% vs 6.10%, DECLINE 0.90% vs 0.90%" in console.export_text()


def test_a_change_exactly_at_the_documented_bound_passes(model: LoadedModel) -> None:
    """``review_rate_change=0.25`` allows 8% -> 10%: the bound is inclusive, not float noise."""
    done = report(
        ("fraud-gbt@2", model),
        ("fraud-gbt@1", model),
        (_replay(880, 100, 20), _replay(900, 80, 20)),
        Bounds(min_agreement=0),
    )
    (check,) = [c for c in done.checks if c.name == "review_rate_change"]
    assert (check.passed, check.value, check.limit) == (True, 0.02, 0.02)
