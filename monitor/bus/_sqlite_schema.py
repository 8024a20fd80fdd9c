"""The embedded log's SQLite file: connections, pragmas, schema and write transactions.

Layout. A record's rowid is ``(partition id << 40) + offset``: one b-tree holds every record,
a partition is a contiguous rowid range, and a fetch or a retention delete is a range scan on the
primary key with no secondary index to maintain on the hot write path.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from monitor.errors import BusError

SCHEMA_VERSION = "1"
OFFSET_BITS = 40
MAX_OFFSET = 1 << OFFSET_BITS

_DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partitions (
    pid INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    log_start INTEGER NOT NULL DEFAULT 0,
    next_offset INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    UNIQUE (topic, part)
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    append_ms INTEGER NOT NULL,
    key BLOB,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    grp TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL,
    member_id TEXT NOT NULL,
    topics TEXT NOT NULL,
    joined_ms INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    polled_ms INTEGER NOT NULL,
    session_ms INTEGER NOT NULL,
    max_poll_ms INTEGER NOT NULL,
    seen_gen INTEGER NOT NULL,
    PRIMARY KEY (grp, member_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    off INTEGER NOT NULL,
    committed_ms INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (grp, topic, part)
) WITHOUT ROWID;
"""

Synchronous = Literal["FULL", "NORMAL"]


def connect(
    path: Path, *, busy_timeout_s: float, synchronous: Synchronous = "FULL"
) -> sqlite3.Connection:
    """A connection in autocommit mode: every write goes through :func:`immediate`.

    ``synchronous=FULL`` (the default for data and offsets) fsyncs the WAL at every commit, so a
    flushed record or a commit survives a power cut, not only ``kill -9``. NORMAL in WAL mode
    would survive ``kill -9`` too (the WAL sits in the OS page cache) but can lose the last
    commits on an OS crash, which breaks "acknowledged means durable"; we use NORMAL only for
    group heartbeats, whose loss costs nothing. Flushes are batched, so FULL costs one fsync per
    batch, not per record.
    """
    try:
        conn = sqlite3.connect(
            str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    except sqlite3.Error as exc:
        raise BusError(f"embedded bus {path}: cannot open: {exc}") from exc
    return conn


def initialise(conn: sqlite3.Connection, path: Path, *, busy_timeout_s: float) -> None:
    """Create the schema if missing (safe when several processes open a new file at once)."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            # auto_vacuum only takes effect before the first table exists; it lets retention
            # give freed pages back to the file system (see _sqlite_retention).
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            # Switching to WAL needs a moment of exclusive access that the busy handler does not
            # always cover while another process is creating the same file.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise BusError(f"embedded bus {path}: cannot enable WAL: {exc}") from exc
            time.sleep(0.05)
    if str(mode).lower() != "wal":
        raise BusError(f"embedded bus {path}: journal_mode is {mode!r}, WAL is required")
    try:
        with immediate(conn):
            for stmt in _DDL.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
            elif row[0] != SCHEMA_VERSION:
                raise BusError(
                    f"embedded bus {path}: schema version {row[0]!r}, this build reads "
                    f"{SCHEMA_VERSION!r}"
                )
    except sqlite3.Error as exc:
        raise BusError(f"embedded bus {path}: cannot create schema: {exc}") from exc


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One short write transaction. BEGIN IMMEDIATE takes the write lock up front, so two
    writers queue on the busy timeout instead of deadlocking on a read-to-write upgrade."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def now_ms(clock_value: float) -> int:
    return int(clock_value * 1000)
