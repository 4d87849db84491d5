"""The C TreeSHAP (``model.treeshap``) gives LightGBM's ``pred_contrib`` up to the rounding
of its sums (``FastContributions.bound``), on any input; a row's bytes do not depend on
the batch around it or on what the memory holds; models it does not take are left to
LightGBM."""

from __future__ import annotations

import gc
import sys
import threading
import time
from pathlib import Path

import lightgbm
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from streamer.model import _treeshap, treeshap  # type: ignore[attr-defined]
from streamer.model.explainer import ADDITIVE_ROWS, open_explainer, reference_rows
from streamer.model.lightgbm_lib import Booster
from streamer.model.metadata import ModelMetadata
from streamer.model.treeshap import (
    Contributions,
    FastContributions,
    available,
    fast_contributions,
    parse,
)

VERSION = Path(__file__).resolve().parents[2] / "models" / "fraud-gbt" / "2"
TEXT = (VERSION / "explainer.txt").read_text()
META = ModelMetadata.model_validate_json((VERSION / "metadata.json").read_text())
BOOSTER = Booster(TEXT)
FAST = FastContributions(TEXT)  # one for every example: its memory carries over
TINY = (40, 0, 4, 64)  # memory for a few leaves' terms and trees' sums: reset all the time
NO_TREES = (1 << 21, 16 << 20, 4, 64)  # every tree computed (from its leaves' memory)
WIDTH, TREES = parse(TEXT)
THRESHOLDS = sorted({float(np.float32(t)) for tree in TREES for t in tree["threshold"]})


def _near(value: float) -> list[float]:
    """A float32 threshold and its neighbours: both sides of ``<=``."""
    f = np.float32(value)
    return [float(np.nextafter(f, np.float32(-np.inf))), float(f), float(np.nextafter(f, np.inf))]


values = (
    st.floats(-1e7, 1e7, width=32)
    | st.sampled_from(THRESHOLDS).flatmap(lambda t: st.sampled_from(_near(t)))
    | st.sampled_from([0.0, -0.0, 1.0, 1e-36, -1e-36, float("nan"), float("inf"), -float("inf")])
    | st.sampled_from([3.4e38, -3.4e38])
)


def _agree(fast: FastContributions, booster: Booster, matrix: npt.NDArray[np.float32]) -> None:
    """Within rounding of LightGBM's, the base value exactly LightGBM's."""
    got, expected = fast(matrix), booster.contributions(matrix)
    assert got.shape == expected.shape == (len(matrix), fast.width + 1)
    assert np.all(np.abs(got - expected) <= fast.bound(matrix))
    assert got[:, -1].tobytes() == expected[:, -1].tobytes()


def test_the_extension_is_built_here() -> None:
    assert available()


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(0, 24), st.just(WIDTH)), elements=values))
def test_contributions_are_lightgbms_up_to_rounding(matrix: npt.NDArray[np.float32]) -> None:
    _agree(FAST, BOOSTER, matrix)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 12), st.just(WIDTH)), elements=values))
def test_a_rows_bytes_depend_on_the_row_alone(matrix: npt.NDArray[np.float32]) -> None:
    """Alone or in a batch, with a warm memory or one that starts over all the time."""
    batch = FAST(matrix)
    alone = np.concatenate([FAST(matrix[i : i + 1]) for i in range(len(matrix))])
    small = FastContributions(TEXT, memory=NO_TREES)(matrix)
    assert batch.tobytes() == alone.tobytes() == small.tobytes()


def test_rows_served_from_memory_are_the_rows_computed() -> None:
    rows = reference_rows(META, 64)
    fast = FastContributions(TEXT)
    first = fast(rows)
    again = fast(np.concatenate([rows[::-1], rows[5:40]]))
    assert again.tobytes() == np.concatenate([first[::-1], first[5:40]]).tobytes()
    stats = fast.stats()
    assert stats.tree_hits >= 99 * len(TREES)  # every tree of every row the second time
    assert stats.trees_kept > 0
    _agree(fast, BOOSTER, rows)


@pytest.mark.parametrize("tables", [0, 1 << 20])
def test_a_memory_that_starts_over_all_the_time_gives_the_same_bytes(tables: int) -> None:
    """A memory of a few terms and trees is emptied for nearly every tree and leaf, within
    a row; without per-leaf tables every leaf is looked up in the hash."""
    rows = reference_rows(META, 10)
    rows = np.concatenate([rows, rows[::-1]])
    tiny = FastContributions(TEXT, memory=(40, tables, 4, 64))
    assert tiny(rows).tobytes() == FastContributions(TEXT)(rows).tobytes()
    assert tiny.stats().trees_kept <= 2  # 4 slots, half of them used at most


def _trained(
    data: npt.NDArray[np.float64], categorical: list[int] | None = None, **params: object
) -> str:
    rng = np.random.default_rng(3)
    label = (np.nan_to_num(data[:, 0]) + rng.normal(0, 0.5, len(data)) > 0.3).astype(int)
    settings = {"objective": "binary", "num_leaves": 15, "min_data_in_leaf": 5, "verbose": -1}
    dataset = lightgbm.Dataset(data, label, categorical_feature=categorical or "auto")
    return str(lightgbm.train(settings | params, dataset, 12).model_to_string())


@pytest.mark.parametrize("zero_as_missing", [False, True])
def test_missing_values_go_where_lightgbm_sends_them(zero_as_missing: bool) -> None:
    """Trees with NaN or zero as missing, default left or right: LightGBM's contributions."""
    rng = np.random.default_rng(7)
    data = rng.normal(0, 1, (400, 4))
    data[rng.random(data.shape) < 0.2] = np.nan
    data[rng.random(data.shape) < 0.2] = 0.0
    text = _trained(data, zero_as_missing=zero_as_missing)
    _, trees = parse(text)
    missing = {(d >> 2) & 3 for tree in trees for d in tree["decision_type"]}
    assert missing == ({1} if zero_as_missing else {2})  # zero / NaN as missing
    rows = np.concatenate([data[:200], rng.normal(0, 2, (50, 4))]).astype(np.float32)
    rows[-10:] = np.asarray([1e-36, -1e-36, 0.0, np.nan], dtype=np.float32)
    booster = Booster(text)
    fast = fast_contributions(text, booster.contributions, rows[:ADDITIVE_ROWS])
    assert fast is not None
    _agree(fast, booster, rows)
    tiny = FastContributions(text, memory=TINY)
    assert tiny(rows).tobytes() == fast(rows).tobytes()


def test_trees_of_more_than_64_nodes_are_lightgbms_too() -> None:
    """Their patterns do not fit a 64-bit word: each leaf's terms are added to the row."""
    rng = np.random.default_rng(5)
    data = rng.normal(0, 1, (3000, 6))
    text = _trained(data, num_leaves=120, min_data_in_leaf=3)
    _, trees = parse(text)
    assert max(len(tree["split_feature"]) for tree in trees) > 64
    rows = np.concatenate([data[:40], rng.normal(0, 3, (20, 6))]).astype(np.float32)
    fast = FastContributions(text)
    _agree(fast, Booster(text), rows)
    assert FastContributions(text, memory=TINY)(rows).tobytes() == fast(rows).tobytes()


def test_a_categorical_model_is_left_to_lightgbm() -> None:
    rng = np.random.default_rng(11)
    data = np.column_stack([rng.integers(0, 6, 300), rng.normal(0, 1, 300)]).astype(float)
    text = _trained(data, [0], min_data_per_group=5, cat_smooth=1)
    assert "num_cat=0" not in text.split("end of trees")[0].split("Tree=1")[0]
    rows = data[:ADDITIVE_ROWS].astype(np.float32)
    assert fast_contributions(text, Booster(text).contributions, rows) is None


def test_a_model_that_disagrees_with_lightgbm_beyond_rounding_is_not_used() -> None:
    """The load check: a contribution further from the reference's than rounding can
    take it, or a base value off by one bit, leaves the explainer on LightGBM."""
    rows = reference_rows(META, 4)
    bound = FAST.bound(rows)
    assert 0 < bound[0, 0] < 1e-9  # a few thousand ulps of the input's sum of |term|

    def off_by(column: int, delta: float) -> Contributions:
        def reference(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
            out = BOOSTER.contributions(matrix)
            out[0, column] = (
                np.nextafter(out[0, column], np.inf) if delta == 0 else out[0, column] + delta
            )
            return out

        return reference

    assert fast_contributions(TEXT, off_by(0, 2 * bound[0, 0]), rows) is None
    assert fast_contributions(TEXT, off_by(WIDTH, 0), rows) is None
    assert fast_contributions(TEXT, off_by(0, bound[0, 0] / 2), rows) is not None
    assert fast_contributions(TEXT, BOOSTER.contributions, rows) is not None


def test_calls_from_two_threads_give_each_its_rows() -> None:
    """One model's memory serves one call at a time; the GIL is free meanwhile."""
    rows = reference_rows(META, 48)
    fast = FastContributions(TEXT, memory=NO_TREES)
    expected = FastContributions(TEXT)(rows)
    got: list[npt.NDArray[np.float64]] = []
    workers = [threading.Thread(target=lambda: got.append(fast(rows))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [g.tobytes() for g in got] == [expected.tobytes()] * 2


def test_the_gil_is_released_while_computing() -> None:
    """With a switch interval longer than the call, another thread runs during it only if
    the call lets go of the GIL."""
    rows = reference_rows(META, 512)
    fast = FastContributions(TEXT, memory=NO_TREES)  # about 0.1 ms a row
    done = threading.Event()
    ran_meanwhile = 0
    worker = threading.Thread(target=lambda: (fast(rows), done.set()))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        worker.start()
        while not done.is_set():
            ran_meanwhile += 1
            done.wait(0.001)
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert ran_meanwhile > 5


@settings(max_examples=40)
@given(st.lists(st.lists(values, min_size=WIDTH, max_size=WIDTH), min_size=1, max_size=12))
def test_a_started_job_gives_the_calls_bytes(rows: list[list[float]]) -> None:
    """``start`` computes in a C thread what a call computes, byte for byte; the caller's
    matrix may change once started (the job has its own)."""
    matrix = np.asarray(rows, dtype=np.float32)
    expected = FAST(matrix)
    finished = FAST.start(matrix)
    matrix[:] = 7.0
    assert finished().tobytes() == expected.tobytes()
    assert finished().tobytes() == expected.tobytes()  # finished twice: the same, no wait


def test_a_started_job_never_takes_the_gil() -> None:
    """The caller holds the GIL throughout (a switch interval longer than the test, and
    only Python in its loop): the job's output fills up all the same. A job that needed
    the GIL, even once (a Python thread), could not finish within the loop."""
    rows = reference_rows(META, 256)
    fast = FastContributions(TEXT, memory=NO_TREES)
    out = np.full((len(rows), fast.width + 1), np.nan)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        job = _treeshap.start(fast._model, rows, len(rows), out)
        deadline = time.monotonic() + 20.0
        while np.isnan(out[-1, -1]) and time.monotonic() < deadline:
            pass  # only Python: the GIL is never let go
        filled = not np.isnan(out[-1, -1])
        _treeshap.finish(job)
    finally:
        sys.setswitchinterval(interval)
    assert filled
    assert out.tobytes() == fast(rows).tobytes()


def test_a_job_dropped_unfinished_is_waited_for_and_freed() -> None:
    """Its capsule's destructor joins the thread: nothing written after it is gone."""
    rows = reference_rows(META, 64)
    for _ in range(20):
        FAST.start(rows)  # dropped at once
    gc.collect()
    assert FAST.start(rows)().tobytes() == FAST(rows).tobytes()


def test_a_job_of_the_wrong_shape_is_refused() -> None:
    rows = reference_rows(META, 4)
    with pytest.raises(ValueError, match="wrong size"):
        _treeshap.start(FAST._model, rows, 5, np.empty((4, WIDTH + 1)))
    with pytest.raises(ValueError, match="matrix is due"):
        FAST.start(rows[:, :5])


def test_without_the_extension_the_explainer_says_so_and_serves_lightgbms(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Not built, or built from another version of the source (its FORMAT differs): a
    warning names the remedy, and the contributions are LightGBM's own."""
    monkeypatch.setattr(treeshap, "_treeshap", None)
    explainer = open_explainer("fraud-gbt@2", VERSION / "model.onnx", META)
    assert explainer is not None
    rows = reference_rows(META, 4)
    with caplog.at_level("WARNING", logger="streamer.model.explainer"):
        got = explainer.contributions(rows)
    assert got.tobytes() == BOOSTER.contributions(rows).tobytes()
    assert "reinstall" in caplog.text
