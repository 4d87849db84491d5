"""When a capture is done (pure): every partition read to the end it had at the start, or
N events kept; what arrived later is not taken, what does not decode is counted."""

from __future__ import annotations

from streamer.cli.capture import Progress
from streamer.errors import Rejection

EVENT = {"transaction_id": "t"}
BAD = Rejection("DecodeError", "not avro", "decode")


def test_an_empty_topic_or_partitions_emptied_by_retention_are_done_at_once() -> None:
    assert Progress(10, {}).done
    assert Progress(10, {0: (0, 0), 1: (7, 7)}).done
    assert not Progress(10, {0: (0, 0), 1: (7, 8)}).done


def test_done_when_every_partition_reached_its_end_at_the_start() -> None:
    progress = Progress(100, {0: (0, 2), 1: (5, 6)})
    progress.take(0, 0, EVENT)
    progress.take(1, 5, BAD)
    assert not progress.done
    progress.take(0, 1, EVENT)
    assert progress.done
    assert (len(progress.events), progress.skipped) == (2, 1)


def test_a_transaction_marker_as_last_offset_ends_the_partition_by_eof() -> None:
    """Offset 2 is a commit marker: no message carries it; the consumer reports EOF."""
    progress = Progress(100, {0: (0, 3)})
    progress.take(0, 0, EVENT)
    progress.take(0, 1, EVENT)
    assert not progress.done
    progress.reached_end(0)
    assert progress.done


def test_messages_that_arrived_after_the_start_are_not_taken() -> None:
    progress = Progress(100, {0: (0, 1), 1: (0, 5)})
    progress.take(0, 1, EVENT)  # beyond partition 0's end: closes it, not kept
    assert progress.events == []
    assert not progress.done  # partition 1 still open


def test_n_events_kept_is_done_even_with_more_to_read() -> None:
    progress = Progress(2, {0: (0, 1000)})
    for offset in range(3):
        progress.take(0, offset, EVENT if offset != 1 else BAD)
    assert progress.done
    assert (len(progress.events), progress.skipped) == (2, 1)
