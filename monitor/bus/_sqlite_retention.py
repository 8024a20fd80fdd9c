"""Retention of the embedded log: drop the oldest records of each partition by age and by size.

Retention only ever removes a *prefix* of a partition, so offsets stay contiguous from the
partition's ``log_start``. Age is measured on the append time (when the log received the record),
not on the record's event timestamp: a replay of week-old news must not be deleted the moment it
is written. Append times are non-decreasing within a partition (up to clock steps between
processes), so the age boundary is found by binary search over offsets instead of a scan.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from monitor.bus._sqlite_schema import OFFSET_BITS, immediate
from monitor.logs import get_logger

log = get_logger("bus.embedded.retention")


@dataclass
class RetentionReport:
    """Records and bytes removed per topic by one retention pass."""

    deleted_records: dict[str, int] = field(default_factory=dict)
    deleted_bytes: dict[str, int] = field(default_factory=dict)

    def add(self, topic: str, records: int, nbytes: int) -> None:
        self.deleted_records[topic] = self.deleted_records.get(topic, 0) + records
        self.deleted_bytes[topic] = self.deleted_bytes.get(topic, 0) + nbytes


def _first_offset_not_older(
    conn: sqlite3.Connection, pid: int, start: int, end: int, cutoff_ms: int
) -> int:
    """Smallest offset in [start, end) whose append time is >= cutoff (end if none)."""
    base = pid << OFFSET_BITS
    lo, hi = start, end
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute(
            "SELECT id, append_ms FROM records WHERE id >= ? AND id < ? ORDER BY id LIMIT 1",
            (base + mid, base + end),
        ).fetchone()
        if row is None:
            hi = mid
            continue
        if int(row[1]) < cutoff_ms:
            lo = int(row[0]) - base + 1
        else:
            hi = mid
    return lo


def _first_offset_within_size(
    conn: sqlite3.Connection, pid: int, start: int, end: int, excess: int
) -> int:
    """Smallest offset such that dropping [start, offset) frees at least ``excess`` bytes."""
    base = pid << OFFSET_BITS
    freed = 0
    cur = conn.execute(
        "SELECT id, length(value) + ifnull(length(key), 0) FROM records "
        "WHERE id >= ? AND id < ? ORDER BY id",
        (base + start, base + end),
    )
    try:
        for rid, size in cur:
            freed += int(size)
            if freed >= excess:
                return int(rid) - base + 1
    finally:
        cur.close()
    return end


def enforce(
    conn: sqlite3.Connection, *, now_ms: int, max_age_ms: int, max_topic_bytes: int
) -> RetentionReport:
    """One retention pass over every partition, one short write transaction per partition."""
    report = RetentionReport()
    parts = conn.execute(
        "SELECT p.pid, p.topic, p.part, t.partitions FROM partitions p "
        "JOIN topics t ON t.name = p.topic ORDER BY p.pid"
    ).fetchall()
    cutoff = now_ms - max_age_ms
    for pid, topic, part, nparts in parts:
        per_partition = max_topic_bytes // max(1, int(nparts))
        with immediate(conn):
            start, end, nbytes = conn.execute(
                "SELECT log_start, next_offset, bytes FROM partitions WHERE pid = ?", (pid,)
            ).fetchone()
            new_start = _first_offset_not_older(conn, pid, start, end, cutoff)
            base = pid << OFFSET_BITS
            aged = 0
            if new_start > start:
                aged = int(
                    conn.execute(
                        "SELECT ifnull(SUM(length(value) + ifnull(length(key), 0)), 0) "
                        "FROM records WHERE id >= ? AND id < ?",
                        (base + start, base + new_start),
                    ).fetchone()[0]
                )
            remaining = int(nbytes) - aged
            if remaining > per_partition:
                new_start = _first_offset_within_size(
                    conn, pid, new_start, end, remaining - per_partition
                )
            if new_start <= start:
                continue
            freed = int(
                conn.execute(
                    "SELECT ifnull(SUM(length(value) + ifnull(length(key), 0)), 0) "
                    "FROM records WHERE id >= ? AND id < ?",
                    (base + start, base + new_start),
                ).fetchone()[0]
            )
            conn.execute(
                "DELETE FROM records WHERE id >= ? AND id < ?", (base + start, base + new_start)
            )
            conn.execute(
                "UPDATE partitions SET log_start = ?, bytes = MAX(0, bytes - ?) WHERE pid = ?",
                (new_start, freed, pid),
            )
        report.add(str(topic), new_start - start, freed)
        log.info(
            "retention removed records",
            extra={
                "topic": topic,
                "partition": part,
                "from_offset": start,
                "to_offset": new_start,
                "bytes": freed,
            },
        )
    if report.deleted_records:
        _give_back_pages(conn)
    return report


def _give_back_pages(conn: sqlite3.Connection) -> None:
    # Freed pages are reused by later writes anyway; only shrink the file when a large share of
    # it is free, so that retention does not turn into a rewrite of the file on every pass.
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    total = int(conn.execute("PRAGMA page_count").fetchone()[0])
    if total and free * 4 > total:
        conn.execute("PRAGMA incremental_vacuum")
