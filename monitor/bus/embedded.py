"""The embedded bus: a durable partitioned log in one SQLite file (WAL), for one machine.

* Topics have N partitions; a keyed record goes to ``murmur2(key) % N`` exactly as Kafka's
  default partitioner places it, so moving to Kafka keeps per-key order and placement.
* Offsets grow by one per record and partition; a committed offset is the next one to read.
* ``flush()`` is the acknowledgement: it writes the buffered records in one ``BEGIN IMMEDIATE``
  transaction with ``synchronous=FULL``. Once it returns, the records survive ``kill -9`` and a
  power cut; before it returns, nothing was promised.
* Several processes may produce and consume at once: writers queue on SQLite's busy timeout,
  transactions stay short, readers never block writers (WAL).
* Consumer groups: see :mod:`monitor.bus._sqlite_group` for membership and hand-over.
* Retention by append age and by size per topic: :meth:`EmbeddedBus.enforce_retention`, also run
  from producer flushes at most every ``retention_check_s``.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from monitor.bus import _sqlite_group as group_sql
from monitor.bus._sqlite_retention import RetentionReport, enforce
from monitor.bus._sqlite_schema import (
    MAX_OFFSET,
    OFFSET_BITS,
    connect,
    immediate,
    initialise,
    now_ms,
)
from monitor.bus.base import Message, TopicPartition
from monitor.errors import BusError
from monitor.logs import get_logger

__all__ = ["EmbeddedBus", "EmbeddedConsumer", "EmbeddedProducer", "partition_for_key"]

with warnings.catch_warnings():
    # kafka-python 3.0 reads its protocol schemas with the deprecated importlib.resources.open_text
    # at import; the warning is raised from importlib, so pytest's "kafka.*" filter misses it.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.partitioner.default import murmur2

log = get_logger("bus.embedded")

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Bound the producer's memory: beyond this, produce() flushes by itself.
_MAX_BUFFERED_RECORDS = 10_000
_MAX_BUFFERED_BYTES = 16 * 1024 * 1024


def partition_for_key(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a non-null key (positive murmur2 modulo count)."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def _wall_ms() -> int:
    # Group liveness (heartbeats, poll deadlines, commit times) is compared between processes,
    # so it uses the wall clock, never the injected clock: a test that moves the bus's clock
    # forward by hours to exercise retention or event time must not expire live members.
    return int(time.time() * 1000)


def _check_topic(topic: str) -> None:
    if topic in (".", "..") or not _TOPIC_RE.match(topic):
        raise BusError(
            f"invalid topic name {topic!r}: use 1-249 characters of [A-Za-z0-9._-] (as Kafka)"
        )


def _key_bytes(key: bytes | str | None) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    raise BusError(f"record key must be bytes, str or None, got {type(key).__name__}")


class EmbeddedBus:
    """One SQLite file holding topics, records, consumer groups and committed offsets."""

    kind = "embedded"

    def __init__(
        self,
        path: Path,
        *,
        partitions: int = 3,
        retention_hours: float = 168.0,
        retention_mb: float = 2048.0,
        poll_interval_ms: int = 50,
        clock: Callable[[], float] = time.time,
        session_timeout_s: float = 10.0,
        busy_timeout_s: float = 30.0,
        retention_check_s: float = 60.0,
    ) -> None:
        """Open (or create) the log at ``path``.

        ``clock`` (seconds) stamps records that carry no timestamp and drives retention; group
        liveness always uses the wall clock. ``session_timeout_s``: a member that stops
        heartbeating for this long is expired. ``busy_timeout_s``: how long a writer waits for
        the file's write lock before the operation fails with BusError. ``retention_check_s``:
        producer flushes run a retention pass at most this often.
        """
        if partitions < 1:
            raise BusError(f"embedded bus {path}: partitions must be >= 1, got {partitions}")
        self.path = Path(path)
        self.default_partitions = partitions
        self.retention_ms = int(retention_hours * 3_600_000)
        self.retention_bytes = int(retention_mb * 1024 * 1024)
        self.poll_interval_s = poll_interval_ms / 1000.0
        self.clock = clock
        self.session_timeout_s = session_timeout_s
        self.busy_timeout_s = busy_timeout_s
        self.retention_check_s = retention_check_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = self.connect()
        initialise(self._conn, self.path, busy_timeout_s=busy_timeout_s)
        self._closed = False

    # -- plumbing shared with producers and consumers ------------------------------------------

    def connect(self, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> sqlite3.Connection:
        """A new connection to the log file (each producer, consumer and thread has its own)."""
        return connect(self.path, busy_timeout_s=self.busy_timeout_s, synchronous=synchronous)

    def now_ms(self) -> int:
        return now_ms(self.clock())

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise BusError(f"embedded bus {self.path}: {what} failed: {exc}") from exc

    # -- Bus -----------------------------------------------------------------------------------

    def producer(self) -> EmbeddedProducer:
        return EmbeddedProducer(self)

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        *,
        from_beginning: bool = True,
        max_poll_interval_s: float = 300.0,
    ) -> EmbeddedConsumer:
        return EmbeddedConsumer(
            self,
            group,
            topics,
            from_beginning=from_beginning,
            max_poll_interval_s=max_poll_interval_s,
        )

    def ensure_topics(self, topics: Iterable[str], partitions: int | None = None) -> None:
        with self._lock, self._errors("ensure_topics"):
            ensure_topics(
                self._conn, list(topics), partitions or self.default_partitions, self.now_ms()
            )

    def partitions(self, topic: str) -> list[int]:
        with self._lock, self._errors("partitions"):
            row = self._conn.execute(
                "SELECT partitions FROM topics WHERE name = ?", (topic,)
            ).fetchone()
        return list(range(int(row[0]))) if row else []

    def end_offsets(self, topic: str) -> dict[int, int]:
        with self._lock, self._errors("end_offsets"):
            rows = self._conn.execute(
                "SELECT part, next_offset FROM partitions WHERE topic = ?", (topic,)
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def start_offsets(self, topic: str) -> dict[int, int]:
        """The earliest offset still retained in each partition."""
        with self._lock, self._errors("start_offsets"):
            rows = self._conn.execute(
                "SELECT part, log_start FROM partitions WHERE topic = ?", (topic,)
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def ping(self, timeout: float = 2.0) -> bool:
        if self._closed:
            return False
        try:
            with self._lock:
                self._conn.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.Error as exc:
            log.warning(
                "embedded bus ping failed", extra={"path": str(self.path), "error": str(exc)}
            )
            return False
        return True

    def enforce_retention(self) -> RetentionReport:
        """Drop records older than ``retention_hours``; keep each topic under ``retention_mb``."""
        with self._lock, self._errors("retention"):
            return enforce(
                self._conn,
                now_ms=self.now_ms(),
                max_age_ms=self.retention_ms,
                max_topic_bytes=self.retention_bytes,
            )

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def ensure_topics(conn: sqlite3.Connection, topics: list[str], partitions: int, now: int) -> None:
    """Create the missing topics (existing ones keep their partition count)."""
    for t in topics:
        _check_topic(t)
    if partitions < 1:
        raise BusError(f"partitions must be >= 1, got {partitions}")
    have = {
        t
        for t in dict.fromkeys(topics)
        if conn.execute("SELECT 1 FROM topics WHERE name = ?", (t,)).fetchone() is not None
    }
    missing = [t for t in dict.fromkeys(topics) if t not in have]
    if not missing:
        return
    with immediate(conn):
        for t in missing:
            cur = conn.execute(
                "INSERT OR IGNORE INTO topics(name, partitions, created_ms) VALUES (?, ?, ?)",
                (t, partitions, now),
            )
            if cur.rowcount:
                conn.executemany(
                    "INSERT INTO partitions(topic, part) VALUES (?, ?)",
                    [(t, p) for p in range(partitions)],
                )
                log.info("topic created", extra={"topic": t, "partitions": partitions})


def _partition_ids(conn: sqlite3.Connection, topic: str) -> list[int]:
    rows = conn.execute(
        "SELECT part, pid FROM partitions WHERE topic = ? ORDER BY part", (topic,)
    ).fetchall()
    return [int(pid) for _, pid in rows]


class EmbeddedProducer:
    """Buffers records in memory; :meth:`flush` writes them in one durable transaction."""

    def __init__(self, bus: EmbeddedBus) -> None:
        self._bus = bus
        self._conn = bus.connect()
        self._lock = threading.RLock()
        self._buffer: list[tuple[int, bytes | None, bytes, int]] = []
        self._buffered_bytes = 0
        self._pids: dict[str, list[int]] = {}
        self._round_robin: dict[str, int] = {}
        self._last_retention = bus.clock()
        self._closed = False

    def _pids_of(self, topic: str) -> list[int]:
        pids = self._pids.get(topic)
        if pids is None:
            _check_topic(topic)
            with self._bus._errors(f"create topic {topic}"):
                ensure_topics(self._conn, [topic], self._bus.default_partitions, self._bus.now_ms())
                pids = _partition_ids(self._conn, topic)
            self._pids[topic] = pids
        return pids

    def produce(
        self, topic: str, key: bytes | str | None, value: bytes, timestamp_ms: int | None = None
    ) -> None:
        if not isinstance(value, bytes | bytearray):
            raise BusError(f"record value must be bytes, got {type(value).__name__}")
        kb = _key_bytes(key)
        ts = self._bus.now_ms() if timestamp_ms is None else int(timestamp_ms)
        with self._lock:
            if self._closed:
                raise BusError("produce on a closed embedded producer")
            pids = self._pids_of(topic)
            if kb is not None:
                part = partition_for_key(kb, len(pids))
            else:
                # Kafka picks a random partition for null keys; round-robin spreads as evenly.
                part = self._round_robin.get(topic, 0) % len(pids)
                self._round_robin[topic] = part + 1
            self._buffer.append((pids[part], kb, bytes(value), ts))
            self._buffered_bytes += len(value) + (len(kb) if kb else 0)
            full = (
                len(self._buffer) >= _MAX_BUFFERED_RECORDS
                or self._buffered_bytes >= _MAX_BUFFERED_BYTES
            )
        if full:
            self.flush()

    def flush(self, timeout: float | None = None) -> None:
        """Write every buffered record in one transaction; on error the buffer is kept.

        ``timeout`` is accepted for the contract; waiting for the write lock is bounded by the
        bus's ``busy_timeout_s``.
        """
        with self._lock:
            if not self._buffer:
                self._maybe_retention()
                return
            by_pid: dict[int, list[tuple[bytes | None, bytes, int]]] = {}
            for pid, k, v, ts in self._buffer:
                by_pid.setdefault(pid, []).append((k, v, ts))
            append = self._bus.now_ms()
            with self._bus._errors(f"flush of {len(self._buffer)} records"), immediate(self._conn):
                for pid, recs in by_pid.items():
                    nxt = int(
                        self._conn.execute(
                            "SELECT next_offset FROM partitions WHERE pid = ?", (pid,)
                        ).fetchone()[0]
                    )
                    base = (pid << OFFSET_BITS) + nxt
                    self._conn.executemany(
                        "INSERT INTO records(id, ts_ms, append_ms, key, value) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [(base + i, ts, append, k, v) for i, (k, v, ts) in enumerate(recs)],
                    )
                    size = sum(len(v) + (len(k) if k else 0) for k, v, _ in recs)
                    self._conn.execute(
                        "UPDATE partitions SET next_offset = next_offset + ?, bytes = bytes + ? "
                        "WHERE pid = ?",
                        (len(recs), size, pid),
                    )
            self._buffer.clear()
            self._buffered_bytes = 0
            self._maybe_retention()

    def _maybe_retention(self) -> None:
        now = self._bus.clock()
        if now - self._last_retention < self._bus.retention_check_s:
            return
        self._last_retention = now
        with self._bus._errors("retention"):
            enforce(
                self._conn,
                now_ms=now_ms(now),
                max_age_ms=self._bus.retention_ms,
                max_topic_bytes=self._bus.retention_bytes,
            )

    def close(self) -> None:
        """Flush what is buffered (as Kafka's producer does on close), then release the file."""
        with self._lock:
            if self._closed:
                return
            try:
                self.flush()
            finally:
                self._closed = True
                self._conn.close()


class EmbeddedConsumer:
    """A member of a consumer group over the embedded log."""

    def __init__(
        self,
        bus: EmbeddedBus,
        group: str,
        topics: Sequence[str],
        *,
        from_beginning: bool,
        max_poll_interval_s: float,
    ) -> None:
        if not group:
            raise BusError("consumer group name must not be empty")
        if not topics:
            raise BusError(f"consumer of group {group!r}: no topics to subscribe to")
        self._bus = bus
        self.group = group
        self.topics = list(dict.fromkeys(topics))
        self.member_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._from_beginning = from_beginning
        self._session_ms = int(bus.session_timeout_s * 1000)
        self._max_poll_ms = int(max_poll_interval_s * 1000)
        self._lock = threading.RLock()
        self._conn = bus.connect()
        self._generation = 0
        self._owned: frozenset[TopicPartition] = frozenset()
        # Owned partitions we may fetch from; the rest of _owned waits for the hand-over.
        self._positions: dict[TopicPartition, int] = {}
        self._pending_seek: dict[TopicPartition, int | Literal["beginning"]] = {}
        self._pids: dict[TopicPartition, int] = {}
        self._paused = False
        self._rotation = 0
        self._closed = False
        self._last_poll_ms = _wall_ms()
        self._stop = threading.Event()
        with bus._errors(f"consumer of group {group!r}: join"):
            ensure_topics(self._conn, self.topics, bus.default_partitions, bus.now_ms())
            self._sync()
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name=f"embedded-heartbeat-{group}", daemon=True
        )
        self._heartbeat_thread.start()

    # -- group membership ----------------------------------------------------------------------

    def _sync(self) -> None:
        """Join if needed, learn the current generation and take up its assignment."""
        now = _wall_ms()
        with immediate(self._conn):
            view = group_sql.sync(
                self._conn,
                group=self.group,
                member_id=self.member_id,
                topics=self.topics,
                now_ms=now,
                session_ms=self._session_ms,
                max_poll_ms=self._max_poll_ms,
            )
            if view.rejoined and self._generation:
                log.warning(
                    "consumer had left its group (session or max_poll_interval expired); "
                    "rejoined and dropped uncommitted positions",
                    extra={"group": self.group, "member": self.member_id},
                )
                self._positions.clear()
                self._owned = frozenset()
            lost = self._owned - view.assignment
            for tp in lost:
                self._positions.pop(tp, None)
                self._pending_seek.pop(tp, None)
            if view.generation != self._generation:
                log.info(
                    "consumer group assignment",
                    extra={
                        "group": self.group,
                        "member": self.member_id,
                        "generation": view.generation,
                        "members": view.members,
                        "assignment": sorted(f"{t.topic}:{t.partition}" for t in view.assignment),
                        "stable": view.stable,
                    },
                )
            self._generation = view.generation
            self._owned = view.assignment
            if view.stable:
                self._activate_pending()

    def _activate_pending(self) -> None:
        """Give each owned partition without a position its start: committed offset, else the
        beginning or end as the group asked. Called inside a transaction or a consistent read."""
        waiting = [tp for tp in self._owned if tp not in self._positions]
        if not waiting:
            return
        committed = self._committed_map()
        for tp in sorted(waiting):
            pid = self._pid(tp)
            start, end = self._conn.execute(
                "SELECT log_start, next_offset FROM partitions WHERE pid = ?", (pid,)
            ).fetchone()
            seek = self._pending_seek.pop(tp, None)
            if seek == "beginning":
                pos = int(start)
            elif isinstance(seek, int):
                pos = self._offset_for_time(tp, seek)
            elif tp in committed:
                pos = committed[tp]
            else:
                pos = int(start) if self._from_beginning else int(end)
            self._positions[tp] = pos

    def _maybe_sync(self) -> None:
        generation, seen = group_sql.state(self._conn, self.group, self.member_id)
        if seen is None or generation != self._generation or seen != self._generation:
            self._sync()
        elif any(tp not in self._positions for tp in self._owned):
            # One read snapshot: the stability check and the committed offsets must agree.
            self._conn.execute("BEGIN")
            try:
                if group_sql.is_stable(self._conn, self.group, self._generation):
                    self._activate_pending()
            finally:
                self._conn.execute("COMMIT")

    def _heartbeat_loop(self) -> None:
        # Own connection: sqlite3 connections must not be shared between threads mid-statement.
        # NORMAL durability: a heartbeat lost to a power cut costs nothing.
        conn = self._bus.connect(synchronous="NORMAL")
        interval = max(0.05, self._bus.session_timeout_s / 4)
        try:
            while not self._stop.wait(interval):
                try:
                    with immediate(conn):
                        group_sql.heartbeat(
                            conn,
                            group=self.group,
                            member_id=self.member_id,
                            now_ms=_wall_ms(),
                            polled_ms=self._last_poll_ms,
                        )
                except sqlite3.Error as exc:
                    log.warning(
                        "consumer heartbeat failed",
                        extra={"group": self.group, "member": self.member_id, "error": str(exc)},
                    )
        finally:
            conn.close()

    # -- Consumer ------------------------------------------------------------------------------

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Message]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            with self._lock:
                if self._closed:
                    raise BusError(f"poll on a closed consumer of group {self.group!r}")
                self._last_poll_ms = _wall_ms()
                with self._bus._errors(f"poll of group {self.group!r}"):
                    self._maybe_sync()
                    out = [] if self._paused else self._fetch(max_records)
            if out:
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if self._stop.wait(min(self._bus.poll_interval_s, remaining)):
                return []

    def _fetch(self, max_records: int) -> list[Message]:
        ready = sorted(tp for tp in self._owned if tp in self._positions)
        if not ready:
            return []
        self._rotation = (self._rotation + 1) % len(ready)
        order = ready[self._rotation :] + ready[: self._rotation]
        out: list[Message] = []
        for tp in order:
            room = max_records - len(out)
            if room <= 0:
                break
            pos = self._positions[tp]
            base = self._pid(tp) << OFFSET_BITS
            rows = self._conn.execute(
                "SELECT id, key, value, ts_ms FROM records WHERE id >= ? AND id < ? "
                "ORDER BY id LIMIT ?",
                (base + pos, base + MAX_OFFSET, room),
            ).fetchall()
            if not rows:
                continue
            first = int(rows[0][0]) - base
            if first > pos:
                log.warning(
                    "position fell below the earliest retained offset; continuing from earliest",
                    extra={
                        "group": self.group,
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "position": pos,
                        "earliest": first,
                    },
                )
            for rid, key, value, ts in rows:
                out.append(
                    Message(
                        tp.topic,
                        tp.partition,
                        int(rid) - base,
                        None if key is None else bytes(key),
                        bytes(value),
                        int(ts),
                    )
                )
            self._positions[tp] = int(rows[-1][0]) - base + 1
        return out

    def _pid(self, tp: TopicPartition) -> int:
        pid = self._pids.get(tp)
        if pid is None:
            row = self._conn.execute(
                "SELECT pid FROM partitions WHERE topic = ? AND part = ?", (tp.topic, tp.partition)
            ).fetchone()
            if row is None:
                raise BusError(f"unknown partition {tp.topic}:{tp.partition}")
            pid = self._pids[tp] = int(row[0])
        return pid

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit offsets of partitions this member owns; others are ignored and logged.

        Raises BusError when this member has been expired from its group since its last poll.

        Committing with a generation older than the group's is still safe: a gaining member
        reads committed offsets only after every member (including this one) has seen the new
        generation, and this transaction is ordered before that.
        """
        with self._lock:
            if self._closed:
                raise BusError(f"commit on a closed consumer of group {self.group!r}")
            wanted = dict(self._positions) if offsets is None else dict(offsets)
            if not wanted:
                return
            now = _wall_ms()
            with self._bus._errors(f"commit of group {self.group!r}"), immediate(self._conn):
                row = self._conn.execute(
                    "SELECT seen_gen FROM members WHERE grp = ? AND member_id = ?",
                    (self.group, self.member_id),
                ).fetchone()
                if row is None or int(row[0]) != self._generation:
                    # Same outcome as Kafka's CommitFailedError: the next poll() rejoins and
                    # the uncommitted records are delivered again to whoever owns them now.
                    raise BusError(
                        f"embedded bus: commit for group {self.group!r} rejected: member "
                        f"{self.member_id} left the group (session or max_poll_interval expired) "
                        f"or rejoined since its last poll; the uncommitted records will be "
                        f"redelivered and the next poll() rejoins the group"
                    )
                rows = []
                for tp, off in wanted.items():
                    if tp not in self._owned or tp not in self._positions:
                        log.warning(
                            "commit ignored for a partition this member does not own",
                            extra={
                                "group": self.group,
                                "member": self.member_id,
                                "topic": tp.topic,
                                "partition": tp.partition,
                                "offset": off,
                            },
                        )
                        continue
                    rows.append((self.group, tp.topic, tp.partition, int(off), now, self.member_id))
                self._conn.executemany(
                    "INSERT INTO offsets(grp, topic, part, off, committed_ms, member_id) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(grp, topic, part) DO UPDATE SET "
                    "off = excluded.off, committed_ms = excluded.committed_ms, "
                    "member_id = excluded.member_id",
                    rows,
                )

    def _offset_for_time(self, tp: TopicPartition, timestamp_ms: int) -> int:
        # A scan in offset order that stops at the first match: Kafka's answer ("earliest offset
        # whose timestamp is >= target") without a timestamp index on the write path.
        pid = self._pid(tp)
        base = pid << OFFSET_BITS
        row = self._conn.execute(
            "SELECT id FROM records WHERE id >= ? AND id < ? AND ts_ms >= ? ORDER BY id LIMIT 1",
            (base, base + MAX_OFFSET, int(timestamp_ms)),
        ).fetchone()
        if row is not None:
            return int(row[0]) - base
        end = self._conn.execute(
            "SELECT next_offset FROM partitions WHERE pid = ?", (pid,)
        ).fetchone()
        return int(end[0])

    def seek_to_timestamp(self, timestamp_ms: int) -> None:
        with self._lock, self._bus._errors(f"seek of group {self.group!r}"):
            for tp in self._owned:
                if tp in self._positions:
                    self._positions[tp] = self._offset_for_time(tp, timestamp_ms)
                else:
                    self._pending_seek[tp] = int(timestamp_ms)

    def seek_to_beginning(self) -> None:
        with self._lock, self._bus._errors(f"seek of group {self.group!r}"):
            for tp in self._owned:
                if tp in self._positions:
                    row = self._conn.execute(
                        "SELECT log_start FROM partitions WHERE pid = ?", (self._pid(tp),)
                    ).fetchone()
                    self._positions[tp] = int(row[0])
                else:
                    self._pending_seek[tp] = "beginning"

    def assignment(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._owned)

    def position(self, tp: TopicPartition) -> int | None:
        """The next offset this member will fetch, or None while the partition is handed over."""
        with self._lock:
            return self._positions.get(tp)

    def _committed_map(self) -> dict[TopicPartition, int]:
        rows = self._conn.execute(
            "SELECT topic, part, off FROM offsets WHERE grp = ?", (self.group,)
        ).fetchall()
        return {TopicPartition(str(t), int(p)): int(o) for t, p, o in rows}

    def committed(self, tp: TopicPartition) -> int | None:
        with self._lock, self._bus._errors(f"committed of group {self.group!r}"):
            row = self._conn.execute(
                "SELECT off FROM offsets WHERE grp = ? AND topic = ? AND part = ?",
                (self.group, tp.topic, tp.partition),
            ).fetchone()
        return None if row is None else int(row[0])

    def lag(self) -> dict[TopicPartition, int]:
        with self._lock, self._bus._errors(f"lag of group {self.group!r}"):
            committed = self._committed_map()
            out: dict[TopicPartition, int] = {}
            for tp in sorted(self._owned):
                start, end = self._conn.execute(
                    "SELECT log_start, next_offset FROM partitions WHERE pid = ?",
                    (self._pid(tp),),
                ).fetchone()
                if tp in committed:
                    base = max(committed[tp], int(start))
                elif tp in self._positions:
                    base = self._positions[tp]
                else:
                    base = int(start) if self._from_beginning else int(end)
                out[tp] = max(0, int(end) - base)
        return out

    def pause(self) -> None:
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def close(self) -> None:
        """Leave the group at once so its partitions move to the other members."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
        self._heartbeat_thread.join(timeout=5.0)
        try:
            with immediate(self._conn):
                group_sql.leave(self._conn, self.group, self.member_id)
        except sqlite3.Error as exc:
            log.warning(
                "consumer could not leave its group; it will expire after the session timeout",
                extra={"group": self.group, "member": self.member_id, "error": str(exc)},
            )
        finally:
            self._conn.close()
