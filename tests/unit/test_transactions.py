from __future__ import annotations

from streamer.kafka.transactions import batch_start, commit_offsets


def test_commit_one_past_each_partitions_last_message_unless_it_must_be_reread() -> None:
    consumed = {("t", 0): [5, 6, 9], ("t", 1): [0, 1, 2], ("t", 2): []}
    assert commit_offsets(consumed, {}) == {("t", 0): 10, ("t", 1): 3}
    assert commit_offsets(consumed, {("t", 1): 1}) == {("t", 0): 10, ("t", 1): 1}
    assert batch_start(consumed) == {("t", 0): 5, ("t", 1): 0}
