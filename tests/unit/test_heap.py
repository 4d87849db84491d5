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
