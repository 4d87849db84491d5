"""The watcher notices alias moves cheaply, prepares verified warm models, refuses bad ones."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from streamer.model import watcher as watcher_module
from streamer.model.promotion import promote
from streamer.model.watcher import ModelWatcher, Outcome, Ready, Refused

COMMITTED = Path(__file__).parents[2] / "models" / "fraud-gbt" / "1"


def _copy_version(models_dir: Path, version: str) -> Path:
    target = models_dir / "fraud-gbt" / version
    shutil.copytree(COMMITTED, target)
    meta = json.loads((target / "metadata.json").read_text())
    meta["version"] = version
    (target / "metadata.json").write_text(json.dumps(meta))
    return target


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _tamper(version_dir: Path) -> None:
    onnx = version_dir / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))


def _point(models_dir: Path, alias: str, version: str) -> None:
    """Move an alias without promote's verification, as a careless hand edit would."""
    path = models_dir / "fraud-gbt" / "aliases.json"
    raw = json.loads(path.read_text())
    raw["aliases"][alias] = version
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(raw))
    tmp.replace(path)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    for version in ("1", "2", "3"):
        _copy_version(tmp_path, version)
    promote(tmp_path, "fraud-gbt@1", alias="champion", reason="baseline")
    return tmp_path


def test_nothing_changed_means_no_load(registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    watcher = ModelWatcher("fraud-gbt@champion", registry)
    assert watcher.current_version == "1"
    loads: list[str] = []
    monkeypatch.setattr(watcher_module, "load_model", lambda *a: loads.append(a[0]))
    for _ in range(50):
        assert watcher.poll() is False
    assert watcher.load_candidate() is None
    assert loads == []


def test_alias_move_yields_a_ready_verified_warm_model(registry: Path) -> None:
    watcher = ModelWatcher("fraud-gbt@champion", registry)
    promote(registry, "fraud-gbt@2", alias="champion", reason="better")
    assert watcher.poll() is True
    outcome = watcher.load_candidate()
    assert isinstance(outcome, Ready)
    assert outcome.version == "2"
    assert outcome.model.metadata.version == "2"
    width = len(outcome.model.metadata.feature_names)
    scores = outcome.scorer.score(np.zeros((3, width), dtype=np.float32))
    assert scores.shape == (3,)
    assert watcher.current_version == "2"
    assert watcher.poll() is False
    assert watcher.load_candidate() is None


def test_tampered_version_is_refused_once_and_retried_after_a_fix(registry: Path) -> None:
    watcher = ModelWatcher("fraud-gbt@champion", registry)
    original = (registry / "fraud-gbt" / "2" / "model.onnx").read_bytes()
    _tamper(registry / "fraud-gbt" / "2")
    _point(registry, "champion", "2")
    outcome = watcher.load_candidate()
    assert isinstance(outcome, Refused)
    assert outcome.version == "2"
    assert "sha256" in outcome.reason
    assert "\n" not in outcome.reason
    assert watcher.current_version == "1"
    assert watcher.poll() is False  # refused as it is: not reloaded every interval
    (registry / "fraud-gbt" / "2" / "model.onnx").write_bytes(original)
    fixed = watcher.load_candidate()
    assert isinstance(fixed, Ready)
    assert fixed.version == "2"


def test_alias_that_no_longer_resolves_is_a_refusal(registry: Path) -> None:
    watcher = ModelWatcher("fraud-gbt@champion", registry)
    (registry / "fraud-gbt" / "aliases.json").write_text("{not json")
    outcome = watcher.load_candidate()
    assert isinstance(outcome, Refused)
    assert outcome.version is None
    assert "aliases.json" in outcome.reason
    assert watcher.current_version == "1"
    assert watcher.load_candidate() is None  # reported once


def test_bare_name_follows_a_new_highest_version(registry: Path) -> None:
    watcher = ModelWatcher("fraud-gbt", registry)
    assert watcher.current_version == "3"
    _copy_version(registry, "4")
    outcome = watcher.load_candidate()
    assert isinstance(outcome, Ready)
    assert outcome.version == "4"


def test_thread_delivers_outcomes_and_check_now_skips_the_interval(registry: Path) -> None:
    watcher = ModelWatcher("fraud-gbt@champion", registry, interval_s=60)
    ready: list[Ready] = []
    refused: list[Refused] = []
    got = threading.Event()

    def on_ready(outcome: Ready) -> None:
        ready.append(outcome)
        got.set()

    def on_refused(outcome: Refused) -> None:
        refused.append(outcome)
        got.set()

    cycled = threading.Event()
    load_candidate = watcher.load_candidate

    def one_cycle() -> Outcome | None:
        outcome = load_candidate()
        cycled.set()
        return outcome

    watcher.load_candidate = one_cycle  # type: ignore[method-assign]
    watcher.start(on_ready=on_ready, on_refused=on_refused)
    try:
        # The first cycle must have run (finding nothing new) before the tampering, or it
        # would find the tampered version itself and check_now would prove nothing.
        assert cycled.wait(10)
        assert (ready, refused) == ([], [])
        _tamper(registry / "fraud-gbt" / "3")
        _point(registry, "champion", "3")
        watcher.check_now()  # like SIGHUP; the 60 s interval would be too late
        assert got.wait(10)
        assert [r.version for r in refused] == ["3"]
        got.clear()
        promote(registry, "fraud-gbt@2", alias="champion", reason="roll forward")
        started = time.monotonic()
        watcher.check_now()
        assert got.wait(10)
        assert time.monotonic() - started < 5
        assert [r.version for r in ready] == ["2"]
    finally:
        watcher.stop()


def test_a_failing_callback_does_not_end_the_watch(registry: Path) -> None:
    watcher = ModelWatcher("fraud-gbt@champion", registry, interval_s=0.05)
    seen: list[str] = []

    def explode(outcome: Ready) -> None:
        seen.append(outcome.version)
        raise RuntimeError("swap failed")

    watcher.start(on_ready=explode, on_refused=lambda r: None)
    try:
        promote(registry, "fraud-gbt@2", alias="champion")
        assert _wait_for(lambda: len(seen) >= 1)
        promote(registry, "fraud-gbt@3", alias="champion")
        assert _wait_for(lambda: len(seen) >= 2)
        assert seen == ["2", "3"]
    finally:
        watcher.stop()


def test_concurrent_load_candidates_prepare_one_model(registry: Path) -> None:
    watcher = ModelWatcher("fraud-gbt@champion", registry)
    promote(registry, "fraud-gbt@2", alias="champion")
    outcomes: list[object] = []
    threads = [threading.Thread(target=lambda: outcomes.append(watcher.load_candidate()))
               for _ in range(4)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(isinstance(o, Ready) for o in outcomes) == 1
    assert outcomes.count(None) == 3
