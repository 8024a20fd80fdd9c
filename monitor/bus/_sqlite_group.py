"""Consumer-group membership of the embedded log: members, heartbeats, generations, assignment.

Every member is a row in ``members``. Any change of membership (join, leave, expiry) bumps the
group's ``generation``; each member re-reads the membership at its next poll, computes the same
deterministic assignment as everyone else, and records the generation it has seen
(``seen_gen``).

Hand-over rule (the embedded counterpart of Kafka's "revoke before assign"): a member starts
fetching a partition it *gained* only once the group is stable, i.e. every member has seen the
current generation. Until then the previous owner may still be working on that partition and may
still commit it; once it has seen the new generation it has dropped the partition, and only then
does the new owner read the committed offset. A member that keeps a partition across
generations keeps its in-memory position.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from monitor.bus.base import TopicPartition
from monitor.logs import get_logger

log = get_logger("bus.embedded.group")


def assign(
    members: Sequence[tuple[str, frozenset[str]]], partitions: Mapping[str, int]
) -> dict[str, set[TopicPartition]]:
    """Round-robin over the sorted partitions, skipping members not subscribed to a topic.

    Deterministic: every member computes the same answer from the same rows.
    """
    ordered = sorted(members)
    out: dict[str, set[TopicPartition]] = {m: set() for m, _ in ordered}
    if not ordered:
        return out
    tps = sorted(
        TopicPartition(t, p)
        for t in {t for _, ts in ordered for t in ts}
        for p in range(partitions.get(t, 0))
    )
    cursor = 0
    for tp in tps:
        for step in range(len(ordered)):
            member, topics = ordered[(cursor + step) % len(ordered)]
            if tp.topic in topics:
                out[member].add(tp)
                cursor = (cursor + step + 1) % len(ordered)
                break
    return out


@dataclass(frozen=True)
class GroupView:
    """What a member learns from one sync: its generation, assignment and the group's state."""

    generation: int
    assignment: frozenset[TopicPartition]
    stable: bool
    rejoined: bool
    members: int


def expire(conn: sqlite3.Connection, group: str, now_ms: int) -> list[str]:
    """Remove members whose heartbeat or poll is overdue; bump the generation if any. In a txn."""
    rows = conn.execute(
        "SELECT member_id FROM members WHERE grp = ? AND "
        "(? - heartbeat_ms > session_ms OR ? - polled_ms > max_poll_ms)",
        (group, now_ms, now_ms),
    ).fetchall()
    gone = [r[0] for r in rows]
    if gone:
        conn.executemany(
            "DELETE FROM members WHERE grp = ? AND member_id = ?", [(group, m) for m in gone]
        )
        bump(conn, group)
        log.warning(
            "consumer group members expired",
            extra={"group": group, "members": gone},
        )
    return gone


def bump(conn: sqlite3.Connection, group: str) -> None:
    conn.execute(
        "INSERT INTO groups(grp, generation) VALUES (?, 1) "
        "ON CONFLICT(grp) DO UPDATE SET generation = generation + 1",
        (group,),
    )


def sync(
    conn: sqlite3.Connection,
    *,
    group: str,
    member_id: str,
    topics: Sequence[str],
    now_ms: int,
    session_ms: int,
    max_poll_ms: int,
) -> GroupView:
    """Join if absent, then read the generation and compute this member's assignment. In a txn."""
    expire(conn, group, now_ms)
    row = conn.execute(
        "SELECT seen_gen FROM members WHERE grp = ? AND member_id = ?", (group, member_id)
    ).fetchone()
    rejoined = row is None
    if rejoined:
        conn.execute(
            "INSERT INTO members(grp, member_id, topics, joined_ms, heartbeat_ms, polled_ms, "
            "session_ms, max_poll_ms, seen_gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (
                group,
                member_id,
                json.dumps(sorted(topics)),
                now_ms,
                now_ms,
                now_ms,
                session_ms,
                max_poll_ms,
            ),
        )
        bump(conn, group)
    generation = int(
        conn.execute("SELECT generation FROM groups WHERE grp = ?", (group,)).fetchone()[0]
    )
    members = [
        (str(m), frozenset(json.loads(t)))
        for m, t in conn.execute(
            "SELECT member_id, topics FROM members WHERE grp = ?", (group,)
        ).fetchall()
    ]
    wanted = {t for _, ts in members for t in ts}
    counts = {
        str(name): int(n)
        for name, n in conn.execute("SELECT name, partitions FROM topics").fetchall()
        if name in wanted
    }
    mine = assign(members, counts).get(member_id, set())
    conn.execute(
        "UPDATE members SET seen_gen = ?, heartbeat_ms = ?, polled_ms = ? "
        "WHERE grp = ? AND member_id = ?",
        (generation, now_ms, now_ms, group, member_id),
    )
    return GroupView(
        generation=generation,
        assignment=frozenset(mine),
        stable=is_stable(conn, group, generation),
        rejoined=rejoined,
        members=len(members),
    )


def is_stable(conn: sqlite3.Connection, group: str, generation: int) -> bool:
    row = conn.execute("SELECT MIN(seen_gen) FROM members WHERE grp = ?", (group,)).fetchone()
    return row is not None and row[0] is not None and int(row[0]) >= generation


def state(conn: sqlite3.Connection, group: str, member_id: str) -> tuple[int, int | None]:
    """(group generation, this member's seen generation or None when it is no member)."""
    row = conn.execute(
        "SELECT g.generation, m.seen_gen FROM groups g LEFT JOIN members m "
        "ON m.grp = g.grp AND m.member_id = ? WHERE g.grp = ?",
        (member_id, group),
    ).fetchone()
    if row is None:
        return 0, None
    return int(row[0]), (None if row[1] is None else int(row[1]))


def heartbeat(
    conn: sqlite3.Connection, *, group: str, member_id: str, now_ms: int, polled_ms: int
) -> bool:
    """Refresh this member's liveness and expire the dead. False when this member is gone. In a
    txn."""
    cur = conn.execute(
        "UPDATE members SET heartbeat_ms = ?, polled_ms = ? WHERE grp = ? AND member_id = ?",
        (now_ms, polled_ms, group, member_id),
    )
    alive = cur.rowcount > 0
    gone = expire(conn, group, now_ms)
    return alive and member_id not in gone


def leave(conn: sqlite3.Connection, group: str, member_id: str) -> None:
    """Remove this member so the others take over its partitions at once. In a txn."""
    cur = conn.execute("DELETE FROM members WHERE grp = ? AND member_id = ?", (group, member_id))
    if cur.rowcount:
        bump(conn, group)
