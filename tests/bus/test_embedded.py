"""What only the embedded bus has to prove: SQLite durability settings, retention, group
membership mechanics, several processes on one file, and reopening the file."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from queue import Empty

import pytest

from monitor.bus._sqlite_group import assign
from monitor.bus.base import TopicPartition
from monitor.bus.embedded import EmbeddedBus
from monitor.errors import BusError

from .conftest import Proc, consume_until, partitions_of

KB = b"x" * 1024


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@contextmanager
def logged(name: str) -> Iterator[list[logging.LogRecord]]:
    """Records logged on ``name`` (independent of how logging is configured elsewhere)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(name)
    handler, old_level = Keep(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "bus.sqlite"


def test_the_file_is_wal_with_full_fsync(path: Path) -> None:
    bus = EmbeddedBus(path)
    prod = bus.producer()
    try:
        assert bus._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert prod._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        prod.close()
        bus.close()


def test_reopening_keeps_records_offsets_and_commits(path: Path) -> None:
    bus = EmbeddedBus(path, partitions=1)
    prod = bus.producer()
    for i in range(5):
        prod.produce("t.reopen", None, f"{i}".encode())
    prod.close()  # close flushes
    cons = bus.consumer("g", ["t.reopen"])
    consume_until(cons, lambda got: len(got) >= 5)
    cons.commit({TopicPartition("t.reopen", 0): 3})
    cons.close()
    bus.close()

    again = EmbeddedBus(path, partitions=7)
    try:
        assert again.partitions("t.reopen") == [0], "an existing topic keeps its partitions"
        assert again.end_offsets("t.reopen") == {0: 5}
        cons = again.consumer("g", ["t.reopen"])
        got = consume_until(cons, lambda got: len(got) >= 2)
        assert [m.offset for m in got] == [3, 4]
        cons.close()
    finally:
        again.close()


def test_a_file_of_another_schema_version_is_refused(path: Path) -> None:
    EmbeddedBus(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(BusError, match="schema version '99'"):
        EmbeddedBus(path)


def test_topic_names_follow_kafka_rules(path: Path) -> None:
    bus = EmbeddedBus(path)
    try:
        with pytest.raises(BusError, match="invalid topic name"):
            bus.ensure_topics(["bad topic!"])
        prod = bus.producer()
        with pytest.raises(BusError, match="invalid topic name"):
            prod.produce("", None, b"v")
        with pytest.raises(BusError, match="value must be bytes"):
            prod.produce("t.ok", None, "text")  # type: ignore[arg-type]
        prod.close()
    finally:
        bus.close()


def test_retention_by_age_drops_old_records_only(path: Path) -> None:
    clock = FakeClock()
    bus = EmbeddedBus(path, partitions=1, retention_hours=1.0, clock=clock)
    prod = bus.producer()
    for i in range(10):
        prod.produce("t.age", None, f"old-{i}".encode())
    prod.flush()
    clock.now += 1800
    for i in range(5):
        prod.produce("t.age", None, f"new-{i}".encode(), timestamp_ms=0)  # event time: ancient
    prod.flush()
    assert bus.enforce_retention().deleted_records == {}
    clock.now += 1800 + 1  # the old batch is now past one hour, the new one is not
    report = bus.enforce_retention()
    assert report.deleted_records == {"t.age": 10}
    assert bus.start_offsets("t.age") == {0: 10}
    assert bus.end_offsets("t.age") == {0: 15}
    cons = bus.consumer("g", ["t.age"])
    got = consume_until(cons, lambda got: len(got) >= 5)
    assert [m.value for m in got] == [f"new-{i}".encode() for i in range(5)]
    cons.close()
    prod.close()
    bus.close()


def test_retention_by_size_keeps_each_topic_under_its_limit(path: Path) -> None:
    bus = EmbeddedBus(path, partitions=2, retention_mb=20 / 1024)  # 20 KiB per topic
    prod = bus.producer()
    for i in range(100):
        prod.produce("t.size", f"k{i}", KB)
        prod.produce("t.small", f"k{i % 3}", b"tiny")
    prod.flush()
    report = bus.enforce_retention()
    assert "t.small" not in report.deleted_records
    kept = sum(e - bus.start_offsets("t.size")[p] for p, e in bus.end_offsets("t.size").items())
    kept_bytes = int(
        bus._conn.execute("SELECT SUM(bytes) FROM partitions WHERE topic='t.size'").fetchone()[0]
    )
    assert kept_bytes <= 20 * 1024
    assert kept >= 16, "only the excess is removed"
    assert report.deleted_records["t.size"] == 100 - kept
    assert bus._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    prod.close()
    bus.close()


def test_retention_runs_from_flushes_at_a_low_rate(path: Path) -> None:
    clock = FakeClock()
    bus = EmbeddedBus(path, partitions=1, retention_hours=1.0, clock=clock, retention_check_s=60)
    prod = bus.producer()
    prod.produce("t.auto", None, b"a")
    prod.flush()
    clock.now += 3601
    prod.produce("t.auto", None, b"b")
    prod.flush()  # more than a minute since the producer started: retention runs
    assert bus.start_offsets("t.auto") == {0: 1}
    clock.now += 3601
    prod.produce("t.auto", None, b"c")
    clock.now -= 3601 - 30  # only 30 s after the last pass: no pass now
    prod.flush()
    assert bus.start_offsets("t.auto") == {0: 1}
    prod.close()
    bus.close()


def test_a_consumer_below_the_earliest_offset_continues_from_the_earliest(path: Path) -> None:
    clock = FakeClock()
    bus = EmbeddedBus(path, partitions=1, retention_hours=1.0, clock=clock)
    prod = bus.producer()
    for i in range(10):
        prod.produce("t.gap", None, f"{i}".encode())
    prod.flush()
    cons = bus.consumer("g", ["t.gap"])
    consume_until(cons, lambda got: len(got) >= 2)
    cons.commit({TopicPartition("t.gap", 0): 2})
    cons.close()
    clock.now += 7200
    for i in range(10, 13):
        prod.produce("t.gap", None, f"{i}".encode())
    prod.flush()
    bus.enforce_retention()
    with logged("riskwire.bus.embedded") as records:
        cons = bus.consumer("g", ["t.gap"])
        got = consume_until(cons, lambda got: len(got) >= 3)
    assert [m.offset for m in got] == [10, 11, 12]
    warned = [r for r in records if "below the earliest" in r.getMessage()]
    assert warned and warned[0].__dict__["position"] == 2
    cons.close()
    prod.close()
    bus.close()


def test_assignment_is_deterministic_and_balanced() -> None:
    members = [("m-b", frozenset({"x", "y"})), ("m-a", frozenset({"x", "y"}))]
    one = assign(members, {"x": 3, "y": 2})
    assert one == assign(list(reversed(members)), {"x": 3, "y": 2})
    assert sorted(len(v) for v in one.values()) == [2, 3]
    assert set().union(*one.values()) == {TopicPartition("x", p) for p in range(3)} | {
        TopicPartition("y", p) for p in range(2)
    }
    only_x = assign([("a", frozenset({"x"})), ("b", frozenset({"y"}))], {"x": 2, "y": 1})
    assert only_x == {
        "a": {TopicPartition("x", 0), TopicPartition("x", 1)},
        "b": {TopicPartition("y", 0)},
    }


def test_a_member_that_stops_polling_loses_its_partitions(path: Path) -> None:
    bus = EmbeddedBus(path, partitions=2, poll_interval_ms=10, session_timeout_s=1.0)
    topic = "t.stall"
    bus.ensure_topics([topic])
    every = partitions_of(bus, topic)
    slow = bus.consumer("g", [topic], max_poll_interval_s=0.3)
    assert slow.assignment() == every
    slow.poll(10, 0.0)
    fast = bus.consumer("g", [topic])
    # The slow member never polls again: after max_poll_interval it is expired and the other
    # member takes every partition, while the slow one still believes it owns them.
    consume_until(fast, lambda _: fast.assignment() == every, timeout=20)
    with pytest.raises(BusError, match="rejected"):
        slow.commit({TopicPartition(topic, 0): 1})
    assert fast.committed(TopicPartition(topic, 0)) is None

    # Its next poll rejoins; while both poll, the partitions are split again.
    def split(_: object) -> bool:
        fast.poll(10, 0.05)
        return len(slow.assignment()) == len(fast.assignment()) == 1

    consume_until(slow, split, timeout=20)
    slow.close()
    fast.close()
    bus.close()


def test_commit_for_a_partition_not_owned_is_ignored(path: Path) -> None:
    bus = EmbeddedBus(path, partitions=2, poll_interval_ms=10)
    topic = "t.own"
    bus.ensure_topics([topic])
    a = bus.consumer("g", [topic])
    b = bus.consumer("g", [topic])
    consume_until(a, lambda _: len(a.assignment()) == 1, timeout=20)
    consume_until(b, lambda _: len(b.assignment()) == 1 and b.lag() is not None, timeout=20)
    (theirs,) = b.assignment()
    with logged("riskwire.bus.embedded") as records:
        a.commit({theirs: 5})
    assert a.committed(theirs) is None
    assert any("does not own" in r.getMessage() for r in records)
    a.close()
    b.close()
    bus.close()


def test_several_processes_produce_and_consume_one_file(path: Path) -> None:
    bus = EmbeddedBus(path, partitions=3)
    topic, group = "t.procs", "g.procs"
    bus.ensure_topics([topic])
    address = str(path)
    consumers = [Proc("group_consumer.py", "embedded", address, topic, group) for _ in range(2)]
    # Both members must have joined before records arrive, or the first may take them all.
    for c in consumers:
        assert c.next_line(60) == "READY", "".join(c.stderr)
    producers = [
        Proc("crash_producer.py", "embedded", address, topic, "--batches", "15", "--prefix", p)
        for p in ("pa", "pb")
    ]
    try:
        acked: set[str] = set()
        for p in producers:
            while (line := p.next_line(90)) is not None:
                if line.startswith("ACK "):
                    acked.update(line[4:].split(","))
            assert p.popen.wait(timeout=60) == 0, "".join(p.stderr)
        assert len(acked) == 2 * 15 * 20
        got: list[str] = []
        per_proc: list[set[str]] = [set(), set()]
        pending = set(acked)
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            # Either process may hold the rest: wait a little on each in turn, drain both.
            for i, c in enumerate(consumers):
                try:
                    line = c.lines.get(timeout=0.2)
                except Empty:
                    continue
                if line and line.startswith("GOT "):
                    got.append(line[4:])
                    per_proc[i].add(line[4:])
                    pending.discard(line[4:])
        assert not pending, f"{len(pending)} acknowledged records never consumed"
        for c in consumers:
            c.stop()
            assert c.popen.returncode == 0, "".join(c.stderr)
    finally:
        for proc in producers + consumers:
            proc.kill()
    assert sorted(got) == sorted(acked), "every record exactly once across the two processes"
    assert per_proc[0] and per_proc[1], "both processes consumed"
    assert bus._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    bus.close()


def test_moving_the_injected_clock_does_not_expire_live_members(path: Path) -> None:
    clock = FakeClock()
    bus = EmbeddedBus(path, partitions=1, clock=clock, session_timeout_s=1.0)
    prod = bus.producer()
    for i in range(4):
        prod.produce("t.clock", None, f"{i}".encode())
    prod.flush()
    cons = bus.consumer("g", ["t.clock"])
    first = consume_until(cons, lambda got: len(got) >= 2)
    clock.now += 10 * 3600
    prod.produce("t.clock", None, b"4")
    prod.flush()
    rest = consume_until(cons, lambda got: len(first) + len(got) >= 5)
    assert [m.offset for m in first + rest] == [0, 1, 2, 3, 4], "no rejoin, no redelivery"
    cons.close()
    prod.close()
    bus.close()


def test_processes_creating_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "bus.sqlite"
    procs = [
        Proc(
            "crash_producer.py",
            "embedded",
            str(path),
            "t.fresh",
            "--batches",
            "2",
            "--prefix",
            f"p{i}",
        )
        for i in range(4)
    ]
    try:
        for p in procs:
            assert p.popen.wait(timeout=90) == 0, "".join(p.stderr)
    finally:
        for p in procs:
            p.kill()
    bus = EmbeddedBus(path)
    try:
        assert sum(bus.end_offsets("t.fresh").values()) == 4 * 2 * 20
    finally:
        bus.close()


def test_a_writer_killed_inside_its_transaction_leaves_no_trace(path: Path) -> None:
    bus = EmbeddedBus(path, partitions=1, busy_timeout_s=20)
    prod = bus.producer()
    prod.produce("t.txn", None, b"committed-0")
    prod.flush()
    holder = Proc("hold_write_lock.py", str(path), "t.txn")
    try:
        assert holder.next_line(60) == "INTXN", "".join(holder.stderr)
    finally:
        holder.kill()
    # The dead process's lock is gone and its uncommitted write was rolled back.
    prod.produce("t.txn", None, b"committed-1")
    prod.flush()
    assert bus.end_offsets("t.txn") == {0: 2}
    cons = bus.consumer("g", ["t.txn"])
    got = consume_until(cons, lambda got: len(got) >= 2)
    assert [m.value for m in got] == [b"committed-0", b"committed-1"]
    assert bus._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    cons.close()
    prod.close()
    bus.close()
