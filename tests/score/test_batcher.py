"""Micro-batcher: size/timeout triggers, length grouping, no starvation (injected clock)."""

from __future__ import annotations

import threading

from monitor.bus.base import TopicPartition
from monitor.score.batcher import MicroBatcher
from monitor.score.offsets import OffsetTracker


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_not_due_until_full_or_oldest_waited_max_wait() -> None:
    clock = Clock()
    b: MicroBatcher[str] = MicroBatcher(4, 0.5, clock=clock)
    assert b.due_in() is None and b.take() == []
    b.add("a", 5)
    clock.t += 0.125
    b.add("b", 5)
    assert b.take() == []
    assert b.due_in() == 0.375
    clock.t += 0.375
    assert b.due_in() == 0.0
    assert sorted(b.take()) == ["a", "b"]
    assert len(b) == 0


def test_full_batch_is_due_at_once() -> None:
    clock = Clock()
    b: MicroBatcher[int] = MicroBatcher(3, 10.0, clock=clock)
    for i in range(3):
        b.add(i, 7)
    assert b.due_in() == 0.0
    assert sorted(b.take()) == [0, 1, 2]


def test_groups_by_length_and_always_includes_the_oldest() -> None:
    clock = Clock()
    b: MicroBatcher[str] = MicroBatcher(3, 10.0, clock=clock)
    for name, length in [
        ("old-long", 60),
        ("s1", 10),
        ("s2", 11),
        ("l1", 58),
        ("s3", 12),
        ("l2", 61),
    ]:
        b.add(name, length)
    first = b.take()
    assert set(first) == {"old-long", "l1", "l2"}  # the oldest, with its nearest lengths
    second = b.take(force=True)
    assert set(second) == {"s1", "s2", "s3"}


def test_no_starvation_of_an_odd_length() -> None:
    clock = Clock()
    b: MicroBatcher[str] = MicroBatcher(2, 10.0, clock=clock)
    b.add("odd", 100)
    for i in range(20):
        b.add(f"s{i}", 10)
    assert "odd" in b.take()


def test_force_takes_a_partial_batch_and_close_makes_all_due() -> None:
    clock = Clock()
    b: MicroBatcher[str] = MicroBatcher(8, 10.0, clock=clock)
    b.add("x", 3)
    assert b.take() == []
    assert b.take(force=True) == ["x"]
    b.add("y", 3)
    b.close()
    assert b.take() == ["y"]


def test_wait_batch_wakes_on_add() -> None:
    b: MicroBatcher[int] = MicroBatcher(2, 60.0)
    got: list[list[int]] = []
    t = threading.Thread(target=lambda: got.append(b.wait_batch(30.0)))
    t.start()
    b.add(1, 4)
    b.add(2, 4)
    t.join(30.0)
    assert got and sorted(got[0]) == [1, 2]


def test_wait_batch_times_out_empty() -> None:
    b: MicroBatcher[int] = MicroBatcher(2, 60.0)
    assert b.wait_batch(0.01) == []


# --- offsets: out-of-order completion never commits past an unfinished record ------------------

TP = TopicPartition("raw", 0)


def test_commit_stops_at_lowest_unfinished_offset() -> None:
    tr = OffsetTracker()
    for off in range(5):
        tr.started(TP, off)
    tr.done(TP, 3)
    tr.done(TP, 0)
    assert tr.committable() == {TP: 1}
    tr.mark_committed({TP: 1})
    assert tr.committable() == {}
    for off in (1, 2, 4):
        tr.done(TP, off)
    assert tr.committable() == {TP: 5}
    assert tr.in_flight() == 0


def test_forget_drops_revoked_partitions() -> None:
    tr = OffsetTracker()
    other = TopicPartition("raw", 1)
    tr.started(TP, 0)
    tr.started(other, 7)
    assert tr.forget({TP}) == [other]
    tr.done(other, 7)  # a late result of a revoked partition is ignored
    assert tr.committable() == {TP: 0} or tr.committable() == {}
    assert other not in tr.committable()
