"""Windowed PSI: sliding windows that forget, hourly references, version 1 still readable."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from streamer.model.metadata import ModelMetadata
from streamer.model.reference import CALENDAR_FEATURES, bin_counts, cuts_for
from streamer.model.registry import load_model
from streamer.observability.drift import DriftMonitor, WindowedDrift, psi

MODELS = Path(__file__).parents[2] / "models"
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def v2() -> ModelMetadata:
    return load_model("fraud-gbt@2", MODELS).metadata


def test_psi_reads_zero_for_equal_shares_and_nan_for_nothing() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert psi([30, 20, 10], [10, 20, 30]) > 0.25
    assert math.isnan(psi([0, 0], [1, 1]))


def test_version_1_without_feature_references_still_loads_and_monitors_its_score() -> None:
    meta = load_model("fraud-gbt@1", MODELS).metadata
    assert meta.reference_features == {}
    assert list(meta.drift_references()) == ["score"]
    drift = WindowedDrift(meta, now=lambda: 0.0)
    assert drift.columns == ("score",)


def test_version_2_has_hourly_references_for_every_non_calendar_input(v2: ModelMetadata) -> None:
    monitored = set(v2.feature_names) - CALENDAR_FEATURES
    assert set(v2.reference_features) == monitored
    assert v2.reference_score is not None
    assert v2.reference_score.by_hour is not None
    assert sum(v2.reference_score.counts) == v2.metrics["holdout_events"]
    for ref in v2.reference_features.values():
        assert sum(ref.counts) == v2.metrics["train_events"]


def test_cuts_give_each_category_a_bin_and_deciles_to_continuous_values() -> None:
    assert cuts_for(np.array([0.0, 1.0, 1.0, 0.0])) == [0.0, 1.0]
    assert len(cuts_for(np.random.default_rng(1).normal(size=10_000))) == 9


def _constant_model(v2: ModelMetadata, value: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows drawn to match the reference of every column at hour 14 (value fills the rest)."""
    rng = np.random.default_rng(3)
    n = 5000
    x = np.full((n, len(v2.feature_names)), value, dtype=np.float64)  # edges stay exact
    for name, ref in v2.reference_features.items():
        x[:, v2.feature_names.index(name)] = _sample(rng, ref.cuts, ref.by_hour, n)
    assert v2.reference_score is not None
    scores = _sample(rng, v2.reference_score.cuts, v2.reference_score.by_hour, n)
    return x, scores


def _sample(
    rng: np.random.Generator, cuts: tuple[float, ...], by_hour: object, n: int
) -> np.ndarray:
    counts = np.asarray(by_hour, dtype=np.float64)[14]
    bins = rng.choice(counts.size, n, p=counts / counts.sum())
    edges = np.array([cuts[0] - 1.0, *cuts])
    return edges[bins]  # the lower edge of each bin lies inside it


def test_window_matches_its_reference_then_forgets_a_shift(v2: ModelMetadata) -> None:
    clock = [0.0]
    drift = WindowedDrift(v2, window_s=600, buckets=10, now=lambda: clock[0])
    x, scores = _constant_model(v2, 0.0)
    times = np.full(len(scores), 14 * HOUR_MS, dtype=np.int64)
    drift.observe(times, scores, x)
    reading = drift.read()
    assert reading.events == len(scores)
    assert max(reading.psi.values()) < 0.01
    clock[0] = 120.0
    drift.observe(times, np.ones_like(scores), x * 3)  # everything shifted
    assert drift.read().psi["score"] > 0.25
    clock[0] = 120.0 + 600.0  # the shifted bucket left the window; nothing newer arrived
    assert drift.read().events == 0
    assert math.isnan(drift.read().psi["score"])


def test_window_by_events_keeps_the_last_n(v2: ModelMetadata) -> None:
    drift = WindowedDrift(v2, window_s=None, window_events=1000, buckets=4, now=lambda: 0.0)
    x, scores = _constant_model(v2, 0.0)
    times = np.full(250, 14 * HOUR_MS, dtype=np.int64)
    for _ in range(4):
        drift.observe(times, np.ones(250), x[:250])
    for i in range(4):
        drift.observe(times, scores[i * 250 : (i + 1) * 250], x[i * 250 : (i + 1) * 250])
    reading = drift.read()
    assert 750 <= reading.events <= 1000
    assert reading.psi["score"] < 0.1


def test_hourly_reference_tells_a_night_window_from_a_shift(v2: ModelMetadata) -> None:
    """The same night-time scores read as drift against the whole day, not against night."""
    ref = v2.reference_score
    assert ref is not None
    assert ref.by_hour is not None
    rng = np.random.default_rng(4)
    night = np.asarray(ref.by_hour, dtype=np.float64)[3]
    bins = rng.choice(night.size, 4000, p=night / night.sum())
    scores = np.array([ref.cuts[0] - 1.0, *ref.cuts])[bins]
    hours = np.full(4000, 3, dtype=np.int64)
    live = bin_counts(scores, hours, np.asarray(ref.cuts)).sum(axis=0)
    day = np.asarray(ref.counts, dtype=np.float64)
    assert psi(live, night) < 0.02
    assert psi(live, day) > 1.0


def test_monitor_keeps_one_window_per_version(v2: ModelMetadata) -> None:
    v1 = load_model("fraud-gbt@1", MODELS).metadata
    monitor = DriftMonitor(window_s=60, min_events=1, now=lambda: 0.0)
    x, scores = _constant_model(v2, 0.0)
    times = np.full(len(scores), 14 * HOUR_MS, dtype=np.int64)
    monitor.observe(v1, times, scores, x)
    monitor.observe(v2, times, scores, x)
    readings = monitor.read()
    assert sorted(readings) == ["fraud-gbt@1", "fraud-gbt@2"]
    assert list(readings["fraud-gbt@1"].psi) == ["score"]
    assert "amount" in readings["fraud-gbt@2"].psi


@pytest.mark.parametrize(
    "kwargs",
    [{"window_s": None}, {"window_s": 60, "window_events": 10}, {"buckets": 1}, {"window_s": 0}],
)
def test_bad_window_settings_are_refused(v2: ModelMetadata, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="window"):
        WindowedDrift(v2, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("window", [{"window_s": 60.0}, {"window_s": None, "window_events": 400}])
def test_small_batches_binned_together_read_as_if_binned_one_by_one(
    v2: ModelMetadata, window: dict[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 1-7 rows wait to be binned together; the clock moves while they wait,
    across sub-buckets and past the window, and every reading matches binning each at once."""
    import streamer.observability.drift as drift_module

    rng = np.random.default_rng(11)
    batches = []
    for _ in range(600):
        n = int(rng.integers(1, 8))
        times = (14 * HOUR_MS + rng.integers(0, 8 * HOUR_MS, n)).astype(np.int64)
        batches.append((times, rng.random(n), rng.random((n, len(v2.feature_names))) * 50))

    def readings(flush_rows: int) -> list[tuple[dict[str, float], int]]:
        monkeypatch.setattr(drift_module, "FLUSH_ROWS", flush_rows)
        clock = [0.0]
        drift = WindowedDrift(v2, now=lambda: clock[0], min_events=10, **window)  # type: ignore[arg-type]
        out = []
        for i, batch in enumerate(batches):
            drift.observe(*batch)
            clock[0] += 0.7
            if i % 37 == 0:
                reading = drift.read()
                out.append((reading.psi, reading.events))
        return out

    together, one_by_one = readings(256), readings(1)
    assert [events for _, events in together] == [events for _, events in one_by_one]
    for (a, _), (b, _) in zip(together, one_by_one, strict=True):
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)
