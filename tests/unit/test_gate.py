"""The promotion gate's verdict (pure): each check against its bound, with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamer.errors import ConfigError
from streamer.model.gate import Bounds, GateReport, Replay, judge, report
from streamer.model.metadata import LoadedModel
from streamer.model.registry import load_model

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def champion() -> LoadedModel:
    return load_model("fraud-gbt@2", MODELS)


def _with(model: LoadedModel, **update: object) -> LoadedModel:
    meta = model.metadata.model_copy(update=update)
    return LoadedModel(metadata=meta, path=model.path, onnx_bytes=model.onnx_bytes)


def _replay(approve: int, review: int, decline: int, ms: float = 2.0) -> Replay:
    decisions = ["APPROVE"] * approve + ["REVIEW"] * review + ["DECLINE"] * decline
    return Replay(decisions=np.asarray(decisions), batch_ms=(ms,) * 20)


BASE = _replay(900, 80, 20)


def _failed(candidate: LoadedModel, champion: LoadedModel, run: Replay) -> dict[str, str]:
    checks = judge(candidate, champion, (run, BASE), Bounds())
    return {c.name: c.detail for c in checks if not c.passed}


def test_the_same_model_on_the_same_events_passes(champion: LoadedModel) -> None:
    assert _failed(champion, champion, BASE) == {}


@pytest.mark.parametrize(
    ("update", "run", "failed", "reason"),
    [
        ({"metrics": {"roc_auc": 0.90, "pr_auc": 0.66}}, BASE, "roc_auc", "0.9000 vs champion"),
        ({"metrics": {"roc_auc": 0.92, "pr_auc": 0.60}}, BASE, "pr_auc", "0.6000"),
        ({"metrics": {"pr_auc": 0.66}}, BASE, "roc_auc", "candidate records no held-out"),
        ({}, _replay(879, 101, 20), "review_rate_change", "REVIEW rate 10.10% vs champion 8.00%"),
        ({}, _replay(906, 80, 14), "decline_rate_change", "DECLINE rate 1.40%"),
        ({}, _replay(900, 80, 20, ms=80.0), "p99_batch_ms", "champion p99 2.0 ms"),
    ],
)
def test_each_check_fails_alone_with_its_reason(
    champion: LoadedModel, update: dict[str, object], run: Replay, failed: str, reason: str
) -> None:
    problems = _failed(_with(champion, **update) if update else champion, champion, run)
    assert list(problems) == [failed]
    assert reason in problems[failed]


def test_disagreement_fails_even_when_the_rates_match(champion: LoadedModel) -> None:
    swapped = Replay(decisions=BASE.decisions[::-1].copy(), batch_ms=BASE.batch_ms)
    problems = _failed(champion, champion, swapped)
    assert list(problems) == ["decision_agreement"]


def test_a_changed_feature_set_is_named(champion: LoadedModel) -> None:
    names = (*champion.metadata.feature_names[:-1], "brand_new")
    problems = _failed(_with(champion, feature_names=names), champion, BASE)
    assert "features added: brand_new" in problems["signature"]
    assert f"features removed: {champion.metadata.feature_names[-1]}" in problems["signature"]


def test_no_events_never_passes(champion: LoadedModel) -> None:
    empty = Replay(decisions=np.asarray([], dtype=str), batch_ms=())
    assert not report(("a", champion), ("b", champion), (empty, empty), Bounds()).passed


def test_the_report_round_trips_and_bad_files_are_one_line(
    champion: LoadedModel, tmp_path: Path
) -> None:
    done = report(
        ("fraud-gbt@2", champion), ("fraud-gbt@champion", champion), (BASE, BASE), Bounds()
    )
    done.write(tmp_path / "gate.json")
    assert GateReport.read(tmp_path / "gate.json") == done
    assert done.candidate.same_version(done.champion)
    (tmp_path / "bad.json").write_bytes(b"\xff\x00 not json")
    for path, message in (
        (tmp_path / "bad.json", "not a gate report"),
        (tmp_path / "no", "does not exist"),
    ):
        with pytest.raises(ConfigError, match=message):
            GateReport.read(path)
