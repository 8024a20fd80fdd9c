"""Dynamic micro-batching: up to ``max_batch`` items or ``max_wait``, grouped by token length.

A batch is due when ``max_batch`` items are pending or the oldest has waited ``max_wait``. A due
batch always contains the oldest pending item (so no item starves) and, among the windows of
items sorted by length that contain it, the one with the smallest length spread: rows are padded
to the batch's longest row, so similar lengths mean little padding.

Time comes from an injected clock; :meth:`MicroBatcher.take` never blocks, and
:meth:`MicroBatcher.wait_batch` blocks on a condition (woken by :meth:`add`) up to a timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Pending(Generic[T]):
    item: T
    length: int
    arrived: float
    seq: int


class MicroBatcher(Generic[T]):
    def __init__(
        self,
        max_batch: int,
        max_wait_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.clock = clock
        self._pending: list[_Pending[T]] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)

    def add(self, item: T, length: int) -> None:
        with self._cond:
            self._pending.append(_Pending(item, length, self.clock(), self._seq))
            self._seq += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Wake waiters; from now on every pending item is due (drain)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def due_in(self) -> float | None:
        """Seconds until a batch is due (0: now), or None when nothing is pending."""
        with self._cond:
            return self._due_in_locked()

    def _due_in_locked(self) -> float | None:
        if not self._pending:
            return None
        if self._closed or len(self._pending) >= self.max_batch:
            return 0.0
        waited = self.clock() - self._pending[0].arrived
        return max(0.0, self.max_wait_s - waited)

    def take(self, *, force: bool = False) -> list[T]:
        """The next batch if one is due (any pending items with ``force``), else []."""
        with self._cond:
            due = self._due_in_locked()
            if due is None or (due > 0 and not force):
                return []
            return self._select_locked()

    def wait_batch(self, timeout: float) -> list[T]:
        """Block until a batch is due (or ``timeout`` passes), and take it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                due = self._due_in_locked()
                if due == 0.0:
                    return self._select_locked()
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left if due is None else min(left, due))

    def _select_locked(self) -> list[T]:
        pending = self._pending
        if len(pending) <= self.max_batch:
            self._pending = []
            return [p.item for p in pending]
        order = sorted(range(len(pending)), key=lambda i: (pending[i].length, pending[i].seq))
        at = order.index(0)  # the oldest item: index 0 of the arrival-ordered list
        n = self.max_batch
        best_lo, best_key = 0, (0, 0)
        for lo in range(max(0, at - n + 1), min(at, len(order) - n) + 1):
            window = order[lo : lo + n]
            spread = pending[window[-1]].length - pending[window[0]].length
            age = sum(pending[i].seq for i in window)
            key = (spread, age)
            if lo == max(0, at - n + 1) or key < best_key:
                best_lo, best_key = lo, key
        chosen = set(order[best_lo : best_lo + n])
        self._pending = [p for i, p in enumerate(pending) if i not in chosen]
        return [pending[i].item for i in sorted(chosen)]
