"""Which input offsets may be committed: at-least-once bookkeeping, no I/O.

Every consumed message is registered in consumption order. It is acknowledged when its
output (a scored event or a dead letter) was acknowledged by the broker. The committable
offset of a partition is one past the longest acknowledged prefix of what was consumed, so
gaps in offsets (transaction markers, compaction) need no special case and an output that
is never acknowledged holds back the commit of everything after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import takewhile

TopicPartition = tuple[str, int]


@dataclass
class _PartitionState:
    order: deque[int] = field(default_factory=deque)
    acked: dict[int, bool] = field(default_factory=dict)
    committable: int | None = None  # one past the last acknowledged prefix offset
    committed: int | None = None  # what was last handed to the consumer's commit
    failed: set[int] = field(default_factory=set)  # offsets whose output failed, since


class OffsetTracker:
    """Contiguous acknowledged prefixes per partition."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _PartitionState] = {}
        self._pending = 0

    @property
    def pending(self) -> int:
        """Messages consumed whose output is not acknowledged yet."""
        return self._pending

    def register(self, tp: TopicPartition, offsets: Iterable[int]) -> None:
        """Record messages handed over by the consumer, in consumption order."""
        state = self._parts.setdefault(tp, _PartitionState())
        fresh = [o for o in offsets if o not in state.acked]
        state.order.extend(fresh)
        state.acked.update(dict.fromkeys(fresh, False))
        self._pending += len(fresh)

    def ack(self, tp: TopicPartition, offset: int) -> None:
        """The output for ``offset`` was acknowledged by the broker."""
        state = self._parts.get(tp)
        if state is None or state.acked.get(offset) is not False:
            return  # partition revoked or rewound since: nothing to do
        state.acked[offset] = True
        self._pending -= 1
        _advance(state)

    def ack_all(self, tp: TopicPartition, offsets: Sequence[int]) -> None:
        """``ack`` of each of ``offsets`` (of one partition), in C-level passes when every
        one is registered and unacknowledged (the rule); one by one otherwise."""
        state = self._parts.get(tp)
        if state is None:
            return
        acked, fresh = state.acked, dict.fromkeys(offsets, True)  # an offset twice: once
        if list(map(acked.get, fresh)).count(False) != len(fresh):  # some stale: one by one
            for offset in fresh:
                self.ack(tp, offset)
            return
        acked.update(fresh)
        self._pending -= len(fresh)
        _advance(state)

    def fail(self, tp: TopicPartition, offset: int) -> None:
        """The output for ``offset`` could not be delivered: it must be processed again."""
        state = self._parts.get(tp)
        if state is None or offset not in state.acked:
            return
        state.failed.add(offset)

    def take_failures(self) -> dict[TopicPartition, int]:
        """Partitions to rewind, and where to; their state past that offset is forgotten."""
        rewinds: dict[TopicPartition, int] = {}
        for tp, state in self._parts.items():
            failures, state.failed = state.failed, set()
            # A report can be stale (from before a rewind, about an older output of an
            # offset consumed again since): an offset whose output was acknowledged since,
            # or committed past, needs nothing. Rewinding behind the commit would only
            # duplicate outputs; and a stale failure must not hide a real one behind it.
            redo = [o for o in failures if state.acked.get(o) is False]
            if not redo:
                continue
            failed = min(redo)
            rewinds[tp] = failed
            kept = [o for o in state.order if o < failed]
            self._pending -= sum(1 for o in state.order if o >= failed and not state.acked[o])
            state.acked = {o: state.acked[o] for o in kept}
            state.order = deque(kept)
        return rewinds

    def commits(self) -> dict[TopicPartition, int]:
        """Offsets that advanced since the last call (to hand to ``Consumer.commit``)."""
        out: dict[TopicPartition, int] = {}
        for tp, state in self._parts.items():
            if state.committable is not None and state.committable != state.committed:
                out[tp] = state.committable
                state.committed = state.committable
        return out

    def committable(self, tp: TopicPartition) -> int | None:
        state = self._parts.get(tp)
        return None if state is None else state.committable

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop revoked or lost partitions; late acknowledgements for them are ignored."""
        for tp in partitions:
            state = self._parts.pop(tp, None)
            if state is not None:
                self._pending -= sum(1 for done in state.acked.values() if not done)


def _advance(state: _PartitionState) -> None:
    """Move the committable offset past the acknowledged prefix of what was consumed."""
    order, acked = state.order, state.acked
    done = len(list(takewhile(acked.__getitem__, order)))
    if done and done == len(order):  # all of it (a drain's rule): no offset dropped one by one
        state.committable = order[-1] + 1
        order.clear()
        acked.clear()  # it holds the offsets of ``order``, no others
    elif done:
        prefix = [order.popleft() for _ in range(done)]
        for offset in prefix:
            del acked[offset]
        state.committable = prefix[-1] + 1
