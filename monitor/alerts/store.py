"""The alerter's durable state in one SQLite file (WAL): outbox, notification log, silences...

Tables
    alerts       every alert raised (body = the alert JSON), unique by alert id; ``produced``
                 once the bus acknowledged it on the alerts topic
    deliveries   one row per (alert, receiver): pending -> sent | dead | suppressed | silenced |
                 inhibited; retries move ``not_before``; a batch being sent holds a lease on its
                 group, so several alerter processes (or threads) never send one group twice at
                 once, and a crashed holder's lease simply expires
    groups       per (receiver, group key): last flush time and the lease
    nlog         the notification log: per (receiver, fingerprint) what was last sent and when;
                 written only after a send succeeded
    silences     operator silences (wall clock)
    windows      engine group state (see engine.py), saved with the batch's outbox rows
    meta         small values such as the engine's watermark

WAL with ``synchronous=NORMAL``: a committed transaction survives a crash of the process (a kill
-9); only a power loss can take the last few, which the bus replays because offsets are committed
after this store.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.logs import get_logger
from monitor.records import Alert

log = get_logger("alerts.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts(
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, fingerprint TEXT NOT NULL,
  rule TEXT NOT NULL, severity TEXT NOT NULL, status TEXT NOT NULL, entity TEXT,
  body TEXT NOT NULL, created_at REAL NOT NULL, produced INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS alerts_created ON alerts(created_at);
CREATE INDEX IF NOT EXISTS alerts_unproduced ON alerts(produced) WHERE produced=0;
CREATE TABLE IF NOT EXISTS deliveries(
  seq INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
  receiver TEXT NOT NULL, group_key TEXT NOT NULL, route TEXT NOT NULL, state TEXT NOT NULL,
  reason TEXT, created_at REAL NOT NULL, not_before REAL NOT NULL, attempts INTEGER NOT NULL
  DEFAULT 0, first_error_at REAL, last_error TEXT, done_at REAL, fallback_done INTEGER NOT NULL
  DEFAULT 0, UNIQUE(alert_id, receiver));
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(receiver, state, group_key, seq);
CREATE TABLE IF NOT EXISTS groups(
  receiver TEXT NOT NULL, group_key TEXT NOT NULL, last_flush_at REAL, lease_until REAL,
  lease_owner TEXT, PRIMARY KEY(receiver, group_key));
CREATE TABLE IF NOT EXISTS nlog(
  receiver TEXT NOT NULL, fingerprint TEXT NOT NULL, alert_id TEXT NOT NULL,
  status TEXT NOT NULL, sent_at REAL NOT NULL, PRIMARY KEY(receiver, fingerprint));
CREATE TABLE IF NOT EXISTS silences(
  id TEXT PRIMARY KEY, entity TEXT NOT NULL, rule TEXT, starts_at REAL NOT NULL,
  ends_at REAL NOT NULL, reason TEXT NOT NULL, created_at REAL NOT NULL, expired_at REAL);
CREATE TABLE IF NOT EXISTS windows(
  rule TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, firing INTEGER NOT NULL,
  PRIMARY KEY(rule, key));
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


@dataclass(frozen=True)
class RouteTarget:
    """Where one alert goes: a receiver, the group it joins there, and the route's timings."""

    receiver: str
    group_key: str
    group_wait: float
    group_interval: float
    repeat_interval: float
    fallback: str | None = None
    fallback_after: float | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RouteTarget:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Delivery:
    seq: int
    alert: Alert
    receiver: str
    group_key: str
    route: RouteTarget
    created_at: float
    attempts: int
    first_error_at: float | None
    last_error: str | None
    fallback_done: bool


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    alert_id: str
    receiver: str
    rule: str
    entity: str | None
    reason: str
    attempts: int
    created_at: float
    done_at: float


@dataclass(frozen=True)
class Silence:
    id: str
    entity: str
    rule: str | None
    starts_at: float
    ends_at: float
    reason: str
    created_at: float
    expired_at: float | None

    def active(self, now: float) -> bool:
        return self.expired_at is None and self.starts_at <= now < self.ends_at

    def mutes(self, alert: Alert) -> bool:
        return alert.entity == self.entity and (self.rule is None or self.rule == alert.rule)


class AlertStore:
    """Thread-safe: one SQLite connection per thread, writes in ``BEGIN IMMEDIATE`` blocks."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers of this process queue here, woken at once, rather than in SQLite's busy
        # handler, which sleeps in steps of up to 100 ms; other processes still meet the latter.
        self._write_lock = threading.Lock()
        self._checkpointer: tuple[threading.Thread, threading.Event] | None = None
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            with self._lock:
                if self._checkpointer is not None:
                    conn.execute("PRAGMA wal_autocheckpoint=0")
                self._conns.append(conn)
            self._local.conn = conn
        return conn

    def start_checkpointer(self, every_s: float = 1.0) -> None:
        """Checkpoint the WAL from a thread of its own instead of inside some writer's commit.

        SQLite's automatic checkpoint runs in whichever commit crosses 1000 WAL pages and fsyncs
        the database file there, stalling every writer behind it (hundreds of ms on a busy
        disk). A PASSIVE checkpoint in the background never blocks writers.
        """
        if self._checkpointer is not None:
            return
        stop = threading.Event()

        def loop() -> None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            try:
                while not stop.wait(every_s):
                    try:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    except sqlite3.Error as exc:
                        log.warning("outbox checkpoint failed", extra={"error": str(exc)})
            finally:
                conn.close()

        t = threading.Thread(target=loop, name="riskwire-outbox-checkpoint", daemon=True)
        with self._lock:
            self._checkpointer = (t, stop)
            for c in self._conns:
                c.execute("PRAGMA wal_autocheckpoint=0")
        t.start()

    def close(self) -> None:
        with self._lock:
            bg, self._checkpointer = self._checkpointer, None
        if bg is not None:
            bg[1].set()
            bg[0].join(5)
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns.clear()
        self._local = threading.local()

    def _tx(self) -> _Tx:
        return _Tx(self._conn(), self._write_lock)

    # --- the role's batch --------------------------------------------------------------------

    def commit_batch(
        self,
        alerts: Sequence[tuple[Alert, Sequence[RouteTarget]]],
        states: Iterable[tuple[str, str, str]],
        *,
        now: float,
        watermark: float | None = None,
    ) -> list[Alert]:
        """Store a batch's alerts, their deliveries and the engine state in one transaction.

        Returns the alerts that were new (an alert id seen before — a replay — is skipped).
        """
        new: list[Alert] = []
        with self._tx() as c:
            for alert, targets in alerts:
                cur = c.execute(
                    "INSERT OR IGNORE INTO alerts(id, fingerprint, rule, severity, status, entity,"
                    " body, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        alert.id,
                        alert.fingerprint,
                        alert.rule,
                        alert.severity,
                        alert.status,
                        alert.entity,
                        alert.to_json().decode(),
                        now,
                    ),
                )
                if cur.rowcount == 0:
                    continue
                new.append(alert)
                for t in targets:
                    self._enqueue(c, alert, t, now)
            for rule, key, text in states:
                c.execute(
                    "INSERT OR REPLACE INTO windows(rule, key, state, firing) VALUES (?,?,?,?)",
                    (rule, key, text, 1 if '"firing":true' in text else 0),
                )
            if watermark is not None and watermark != float("-inf"):
                c.execute(
                    "INSERT OR REPLACE INTO meta(k, v) VALUES ('watermark', ?)", (str(watermark),)
                )
        return new

    def _enqueue(self, c: sqlite3.Connection, alert: Alert, t: RouteTarget, now: float) -> None:
        row = c.execute(
            "SELECT last_flush_at FROM groups WHERE receiver=? AND group_key=?",
            (t.receiver, t.group_key),
        ).fetchone()
        not_before = now + t.group_wait
        if row is not None and row[0] is not None:
            not_before = max(not_before, row[0] + t.group_interval)
        c.execute(
            "INSERT OR IGNORE INTO deliveries(alert_id, fingerprint, receiver, group_key, route,"
            " state, created_at, not_before) VALUES (?,?,?,?,?, 'pending', ?, ?)",
            (alert.id, alert.fingerprint, t.receiver, t.group_key, t.to_json(), now, not_before),
        )

    def mark_produced(self, alert_ids: Sequence[str]) -> None:
        with self._tx() as c:
            c.executemany("UPDATE alerts SET produced=1 WHERE id=?", [(i,) for i in alert_ids])

    def unproduced(self, limit: int = 1_000_000) -> list[Alert]:
        rows = self._conn().execute(
            "SELECT body FROM alerts WHERE produced=0 ORDER BY seq LIMIT ?", (limit,)
        )
        return [Alert.from_json(r[0]) for r in rows]

    def enqueue(self, alert: Alert, targets: Sequence[RouteTarget], *, now: float) -> bool:
        """Store one alert with its deliveries (tests, redelivery tools). True when new."""
        return bool(self.commit_batch([(alert, targets)], [], now=now))

    # --- engine state ------------------------------------------------------------------------

    def load_group(self, rule: str, key: str) -> str | None:
        row = (
            self._conn()
            .execute("SELECT state FROM windows WHERE rule=? AND key=?", (rule, key))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def firing_groups(self) -> list[tuple[str, str, str]]:
        rows = self._conn().execute("SELECT rule, key, state FROM windows WHERE firing=1")
        return [(str(r), str(k), str(s)) for r, k, s in rows]

    def watermark(self) -> float | None:
        row = self._conn().execute("SELECT v FROM meta WHERE k='watermark'").fetchone()
        return None if row is None else float(row[0])

    # --- delivery ----------------------------------------------------------------------------

    def claim(
        self, receiver: str, *, now: float, lease_s: float, owner: str, limit: int = 100
    ) -> list[Delivery] | None:
        """Lease the group whose oldest pending delivery is due; return its due deliveries.

        A group waits for its oldest row: a newer alert never overtakes an older one of the same
        group that is backing off, which keeps order per fingerprint.
        """
        # A read first: idle workers must not queue for the write lock just to find nothing.
        if not self._due_group(self._conn(), receiver, now):
            return None
        with self._tx() as c:
            row = c.execute(
                "SELECT d.group_key FROM deliveries d JOIN (SELECT group_key, MIN(seq) AS s FROM"
                " deliveries WHERE receiver=? AND state='pending' GROUP BY group_key) m"
                " ON d.seq=m.s LEFT JOIN groups g ON g.receiver=d.receiver AND"
                " g.group_key=d.group_key WHERE d.not_before<=? AND (g.lease_until IS NULL OR"
                " g.lease_until<?) ORDER BY d.seq LIMIT 1",
                (receiver, now, now),
            ).fetchone()
            if row is None:
                return None
            group_key = row[0]
            c.execute(
                "INSERT INTO groups(receiver, group_key, lease_until, lease_owner) VALUES"
                " (?,?,?,?) ON CONFLICT(receiver, group_key) DO UPDATE SET"
                " lease_until=excluded.lease_until, lease_owner=excluded.lease_owner",
                (receiver, group_key, now + lease_s, owner),
            )
            rows = c.execute(
                "SELECT d.seq, a.body, d.receiver, d.group_key, d.route, d.created_at, d.attempts,"
                " d.first_error_at, d.last_error, d.fallback_done, d.not_before FROM deliveries d"
                " JOIN alerts a"
                " ON a.id=d.alert_id WHERE d.receiver=? AND d.group_key=? AND d.state='pending'"
                " ORDER BY d.seq LIMIT ?",
                (receiver, group_key, limit),
            ).fetchall()
        # Only the due prefix: a row that must still wait holds back every row after it.
        due = []
        for r in rows:
            if r[10] > now:
                break
            due.append(r)
        rows = due
        return [
            Delivery(
                seq=r[0],
                alert=Alert.from_json(r[1]),
                receiver=r[2],
                group_key=r[3],
                route=RouteTarget.from_json(r[4]),
                created_at=r[5],
                attempts=r[6],
                first_error_at=r[7],
                last_error=r[8],
                fallback_done=bool(r[9]),
            )
            for r in rows
        ]

    @staticmethod
    def _due_group(c: sqlite3.Connection, receiver: str, now: float) -> bool:
        row = c.execute(
            "SELECT 1 FROM deliveries WHERE receiver=? AND state='pending' AND not_before<=?"
            " LIMIT 1",
            (receiver, now),
        ).fetchone()
        return row is not None

    def release(
        self, receiver: str, group_key: str, owner: str, *, flushed_at: float | None
    ) -> None:
        with self._tx() as c:
            if flushed_at is not None:
                c.execute(
                    "UPDATE groups SET lease_until=NULL, lease_owner=NULL, last_flush_at=? WHERE"
                    " receiver=? AND group_key=? AND lease_owner=?",
                    (flushed_at, receiver, group_key, owner),
                )
            else:
                c.execute(
                    "UPDATE groups SET lease_until=NULL, lease_owner=NULL WHERE receiver=? AND"
                    " group_key=? AND lease_owner=?",
                    (receiver, group_key, owner),
                )

    def renew(self, receiver: str, group_key: str, owner: str, *, until: float) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE groups SET lease_until=? WHERE receiver=? AND group_key=? AND"
                " lease_owner=?",
                (until, receiver, group_key, owner),
            )

    def next_due(self, receiver: str) -> float | None:
        """When the earliest pending delivery of ``receiver`` becomes due (None: none pending)."""
        row = (
            self._conn()
            .execute(
                "SELECT MIN(not_before) FROM deliveries WHERE receiver=? AND state='pending'",
                (receiver,),
            )
            .fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    def depth_all(self, receivers: Sequence[str]) -> dict[str, int]:
        got = self.depth()
        return {r: got.get(r, 0) for r in receivers}

    def mark_sent(
        self,
        d: Delivery,
        *,
        now: float,
        owner: str | None = None,
        lease_s: float = 0.0,
        release_flushed_at: float | None = None,
    ) -> None:
        """Record a successful send: the delivery and the notification log.

        A delivery row is unique per (alert, receiver) and only pending rows are claimed, so
        a sent alert is never sent to that receiver again.

        With ``owner``, the group's lease is renewed in the same transaction, or released (and
        the group's flush time set) with ``release_flushed_at``.
        """
        with self._tx() as c:
            if owner is not None and release_flushed_at is not None:
                c.execute(
                    "UPDATE groups SET lease_until=NULL, lease_owner=NULL, last_flush_at=? WHERE"
                    " receiver=? AND group_key=? AND lease_owner=?",
                    (release_flushed_at, d.receiver, d.group_key, owner),
                )
            elif owner is not None:
                c.execute(
                    "UPDATE groups SET lease_until=? WHERE receiver=? AND group_key=? AND"
                    " lease_owner=?",
                    (now + lease_s, d.receiver, d.group_key, owner),
                )
            c.execute(
                "UPDATE deliveries SET state='sent', done_at=?, attempts=attempts+1 WHERE seq=?",
                (now, d.seq),
            )
            c.execute(
                "INSERT OR REPLACE INTO nlog(receiver, fingerprint, alert_id, status, sent_at)"
                " VALUES (?,?,?,?,?)",
                (d.receiver, d.alert.fingerprint, d.alert.id, d.alert.status, now),
            )

    def mark_done(self, d: Delivery, state: str, reason: str, *, now: float) -> None:
        """Close a delivery without sending: suppressed, silenced, inhibited or dead."""
        with self._tx() as c:
            c.execute(
                "UPDATE deliveries SET state=?, reason=?, done_at=? WHERE seq=?",
                (state, reason, now, d.seq),
            )

    def mark_retry(self, d: Delivery, error: str, *, now: float, not_before: float) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE deliveries SET attempts=attempts+1, last_error=?, not_before=?,"
                " first_error_at=COALESCE(first_error_at, ?) WHERE seq=?",
                (error, not_before, now, d.seq),
            )

    def hand_to(self, d: Delivery, target: RouteTarget, *, now: float) -> None:
        """Enqueue ``d``'s alert for another receiver (the fallback), once."""
        with self._tx() as c:
            c.execute("UPDATE deliveries SET fallback_done=1 WHERE seq=?", (d.seq,))
            self._enqueue(c, d.alert, target, now)

    def last_notified(self, receiver: str, fingerprint: str) -> tuple[str, str, float] | None:
        row = (
            self._conn()
            .execute(
                "SELECT alert_id, status, sent_at FROM nlog WHERE receiver=? AND fingerprint=?",
                (receiver, fingerprint),
            )
            .fetchone()
        )
        return None if row is None else (str(row[0]), str(row[1]), float(row[2]))

    def depth(self) -> dict[str, int]:
        rows = self._conn().execute(
            "SELECT receiver, COUNT(*) FROM deliveries WHERE state='pending' GROUP BY receiver"
        )
        return {str(r): int(n) for r, n in rows}

    def states(self, receiver: str | None = None) -> dict[str, int]:
        q = "SELECT state, COUNT(*) FROM deliveries"
        args: tuple[Any, ...] = ()
        if receiver is not None:
            q += " WHERE receiver=?"
            args = (receiver,)
        return {str(s): int(n) for s, n in self._conn().execute(q + " GROUP BY state", args)}

    def recent_firing(self, since: float) -> list[Alert]:
        """The latest alert of each fingerprint created since ``since``, if it is firing."""
        rows = self._conn().execute(
            "SELECT body FROM alerts WHERE seq IN (SELECT MAX(seq) FROM alerts WHERE"
            " created_at>=? GROUP BY fingerprint) AND status='firing'",
            (since,),
        )
        return [Alert.from_json(r[0]) for r in rows]

    def find_alert(self, id_or_fingerprint: str) -> Alert | None:
        """An alert by id, or the latest of a fingerprint."""
        row = (
            self._conn()
            .execute(
                "SELECT body FROM alerts WHERE id=? OR fingerprint=? ORDER BY seq DESC LIMIT 1",
                (id_or_fingerprint, id_or_fingerprint),
            )
            .fetchone()
        )
        return None if row is None else Alert.from_json(row[0])

    # --- dead letters ------------------------------------------------------------------------

    def dead(self) -> list[DeadLetter]:
        rows = self._conn().execute(
            "SELECT d.seq, d.alert_id, d.receiver, a.rule, a.entity, d.reason, d.attempts,"
            " d.created_at, d.done_at FROM deliveries d JOIN alerts a ON a.id=d.alert_id"
            " WHERE d.state='dead' ORDER BY d.seq"
        )
        return [DeadLetter(*r) for r in rows]

    def redeliver(self, *, now: float, alert_id: str | None = None) -> int:
        """Put dead deliveries (of one alert id, or all) back in the outbox, as new."""
        with self._tx() as c:
            q = (
                "UPDATE deliveries SET state='pending', reason=NULL, attempts=0, created_at=?,"
                " not_before=?, first_error_at=NULL, last_error=NULL, done_at=NULL,"
                " fallback_done=0 WHERE state='dead'"
            )
            args: tuple[Any, ...] = (now, now)
            if alert_id is not None:
                q += " AND (alert_id=? OR CAST(seq AS TEXT)=?)"
                args += (alert_id, alert_id)
            return int(c.execute(q, args).rowcount)

    # --- silences ----------------------------------------------------------------------------

    def add_silence(
        self, entity: str, rule: str | None, *, now: float, duration_s: float, reason: str
    ) -> Silence:
        s = Silence(uuid.uuid4().hex[:12], entity, rule, now, now + duration_s, reason, now, None)
        with self._tx() as c:
            c.execute(
                "INSERT INTO silences(id, entity, rule, starts_at, ends_at, reason, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (s.id, s.entity, s.rule, s.starts_at, s.ends_at, s.reason, s.created_at),
            )
        return s

    def silences(self, *, now: float | None = None) -> list[Silence]:
        rows = self._conn().execute(
            "SELECT id, entity, rule, starts_at, ends_at, reason, created_at, expired_at"
            " FROM silences ORDER BY created_at"
        )
        out = [Silence(*r) for r in rows]
        return out if now is None else [s for s in out if s.active(now)]

    def expire_silence(self, silence_id: str, *, now: float) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE silences SET expired_at=? WHERE id=? AND expired_at IS NULL",
                (now, silence_id),
            )
            return cur.rowcount > 0

    def prune(self, *, before: float) -> int:
        """Forget finished deliveries and alerts older than ``before`` (keeps dead letters)."""
        with self._tx() as c:
            n = c.execute(
                "DELETE FROM deliveries WHERE state NOT IN ('pending','dead') AND done_at<?",
                (before,),
            ).rowcount
            c.execute(
                "DELETE FROM alerts WHERE created_at<? AND id NOT IN (SELECT alert_id FROM"
                " deliveries)",
                (before,),
            )
        return int(n)


class _Tx:
    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self.conn = conn
        self.lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.conn.execute("COMMIT")
            else:
                self.conn.execute("ROLLBACK")
        finally:
            self.lock.release()
