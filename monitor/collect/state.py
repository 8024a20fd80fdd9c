"""The collector's durable state in one SQLite file: the seen-set and each feed's poll state.

The seen-set is written only after the bus flush of the items it names succeeded (see
``Collector.poll``): a crash in between re-publishes at worst, never loses an item, and the item
id makes a re-publish harmless downstream. WAL mode: a killed process loses nothing committed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    id TEXT PRIMARY KEY,
    url TEXT,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    words TEXT NOT NULL,
    entities TEXT NOT NULL,
    event_ts REAL NOT NULL,
    seen_ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_url ON seen(url);
CREATE INDEX IF NOT EXISTS seen_ts ON seen(seen_ts);
CREATE TABLE IF NOT EXISTS feeds (
    feed_id TEXT PRIMARY KEY,
    location TEXT NOT NULL DEFAULT '',
    etag TEXT,
    last_modified TEXT,
    status TEXT NOT NULL DEFAULT 'new',
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_outcome TEXT,
    last_attempt REAL,
    last_success REAL,
    next_due REAL
);
"""


@dataclass(frozen=True)
class FeedState:
    feed_id: str
    location: str = ""
    etag: str | None = None
    last_modified: str | None = None
    status: str = "new"  # new | ok | backing-off
    failures: int = 0
    last_error: str | None = None
    last_outcome: str | None = None
    last_attempt: float | None = None
    last_success: float | None = None
    next_due: float | None = None

    def file_tokens(self) -> dict[str, str]:
        """For directory feeds: the per-file change tokens kept in ``last_modified``."""
        if not self.last_modified:
            return {}
        try:
            doc = json.loads(self.last_modified)
        except json.JSONDecodeError:
            return {}
        return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    def evolve(self, **changes: object) -> FeedState:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SeenRow:
    id: str
    url: str | None
    source: str
    title: str
    words: frozenset[str]
    entities: tuple[str, ...]
    event_ts: float
    seen_ts: float


class StateStore:
    """Thread-safe access to the state file (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- feeds ---------------------------------------------------------------------------

    def feed(self, feed_id: str) -> FeedState:
        with self._lock:
            row = self._db.execute(
                "SELECT feed_id, location, etag, last_modified, status, failures, last_error, "
                "last_outcome, last_attempt, last_success, next_due FROM feeds WHERE feed_id=?",
                (feed_id,),
            ).fetchone()
        return FeedState(*row) if row else FeedState(feed_id)

    def feeds(self) -> list[FeedState]:
        with self._lock:
            rows = self._db.execute(
                "SELECT feed_id, location, etag, last_modified, status, failures, last_error, "
                "last_outcome, last_attempt, last_success, next_due FROM feeds ORDER BY feed_id"
            ).fetchall()
        return [FeedState(*r) for r in rows]

    def save_feed(self, s: FeedState) -> None:
        with self._lock:
            self._write_feed(s)

    def _write_feed(self, s: FeedState) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO feeds (feed_id, location, etag, last_modified, status, "
            "failures, last_error, last_outcome, last_attempt, last_success, next_due) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                s.feed_id,
                s.location,
                s.etag,
                s.last_modified,
                s.status,
                s.failures,
                s.last_error,
                s.last_outcome,
                s.last_attempt,
                s.last_success,
                s.next_due,
            ),
        )

    # --- seen-set ------------------------------------------------------------------------

    def add_seen(self, rows: Iterable[SeenRow], feed_state: FeedState | None = None) -> None:
        """Record published items, and (in the same transaction) the feed's new poll state, so
        that the conditional-GET validators never run ahead of what was published."""
        data = [
            (
                r.id,
                r.url,
                r.source,
                r.title,
                " ".join(sorted(r.words)),
                ",".join(r.entities),
                r.event_ts,
                r.seen_ts,
            )
            for r in rows
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO seen (id, url, source, title, words, entities, "
                    "event_ts, seen_ts) VALUES (?,?,?,?,?,?,?,?)",
                    data,
                )
                if feed_state is not None:
                    self._write_feed(feed_state)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def seen_since(self, since_ts: float) -> Iterator[SeenRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, url, source, title, words, entities, event_ts, seen_ts FROM seen "
                "WHERE seen_ts >= ? ORDER BY seen_ts",
                (since_ts,),
            ).fetchall()
        for r in rows:
            yield SeenRow(
                id=r[0],
                url=r[1],
                source=r[2],
                title=r[3],
                words=frozenset(r[4].split()) if r[4] else frozenset(),
                entities=tuple(e for e in r[5].split(",") if e),
                event_ts=r[6],
                seen_ts=r[7],
            )

    def count_seen(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM seen").fetchone()
        return int(n)

    def prune(self, before_ts: float) -> int:
        with self._lock:
            cur = self._db.execute("DELETE FROM seen WHERE seen_ts < ?", (before_ts,))
        return cur.rowcount
