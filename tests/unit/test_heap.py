"""The heap is settled once start-up is over: frozen, and young collections rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streamer.service import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.enable()


def test_settle_freezes_start_up_objects_and_raises_gen0_threshold(restored_gc: None) -> None:
    built_at_start_up = [{"i": i} for i in range(1000)]
    heap.settle()
    assert gc.get_freeze_count() >= len(built_at_start_up)
    assert gc.get_threshold()[0] == heap.GEN0_THRESHOLD
    assert not any(o is built_at_start_up for o in gc.get_objects())  # frozen: never walked


def test_cycles_made_after_settling_are_still_collected(restored_gc: None) -> None:
    heap.settle()

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2


def test_start_up_makes_no_collection_and_settles_when_it_succeeds(restored_gc: None) -> None:
    passes = []
    gc.callbacks.append(lambda phase, info: passes.append(phase))
    try:
        with heap.start_up():
            assert not gc.isenabled()
            built = [[i] for i in range(100_000)]  # many times the young threshold
        assert passes == []
        assert gc.isenabled()
        assert gc.get_threshold()[0] == heap.GEN0_THRESHOLD
        assert not any(o is built for o in gc.get_objects())  # frozen: never walked
    finally:
        gc.callbacks.pop()


def test_a_failed_start_up_resumes_collections_unfrozen(restored_gc: None) -> None:
    frozen = gc.get_freeze_count()
    with pytest.raises(RuntimeError), heap.start_up():
        raise RuntimeError("refused")
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
