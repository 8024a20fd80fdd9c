"""Which offsets are safe to commit when items finish out of order.

Length-grouped batching scores a partition's records out of order. A partition's committable
offset is therefore its lowest offset still in flight (everything below it is done), or one past
the highest offset seen when nothing is in flight. Committing that never skips an unfinished
record, so a crash re-delivers, never loses.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from monitor.bus.base import TopicPartition


class OffsetTracker:
    def __init__(self) -> None:
        self._open: dict[TopicPartition, set[int]] = {}
        self._heap: dict[TopicPartition, list[int]] = {}
        self._high: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        open_ = self._open.setdefault(tp, set())
        if offset not in open_:
            open_.add(offset)
            heapq.heappush(self._heap.setdefault(tp, []), offset)
        self._high[tp] = max(self._high.get(tp, -1), offset)

    def done(self, tp: TopicPartition, offset: int) -> None:
        open_ = self._open.get(tp)
        if open_ is not None:
            open_.discard(offset)

    def in_flight(self) -> int:
        return sum(len(s) for s in self._open.values())

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets (next to read) that advanced since the last :meth:`mark_committed`."""
        out: dict[TopicPartition, int] = {}
        for tp, high in self._high.items():
            heap = self._heap.get(tp, [])
            open_ = self._open.get(tp, set())
            while heap and heap[0] not in open_:
                heapq.heappop(heap)
            safe = heap[0] if heap else high + 1
            if safe > self._committed.get(tp, -1):
                out[tp] = safe
        return out

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, off in offsets.items():
            self._committed[tp] = max(self._committed.get(tp, -1), off)

    def forget(self, keep: Iterable[TopicPartition]) -> list[TopicPartition]:
        """Drop partitions not in ``keep`` (revoked in a rebalance); return those dropped."""
        keep_set = set(keep)
        gone = [tp for tp in self._high if tp not in keep_set]
        for tp in gone:
            self._open.pop(tp, None)
            self._heap.pop(tp, None)
            self._high.pop(tp, None)
            self._committed.pop(tp, None)
        return gone
