"""Opens a write transaction on an embedded log, writes into it, and waits to be killed.

    python hold_write_lock.py PATH TOPIC

Prints ``INTXN`` once the uncommitted write is in place and it holds the file's write lock.
"""

from __future__ import annotations

import sys
from pathlib import Path

from monitor.bus._sqlite_schema import OFFSET_BITS
from monitor.bus.embedded import EmbeddedBus


def main() -> int:
    path, topic = Path(sys.argv[1]), sys.argv[2]
    bus = EmbeddedBus(path, partitions=1)
    bus.ensure_topics([topic])
    conn = bus.connect()
    pid, nxt = conn.execute(
        "SELECT pid, next_offset FROM partitions WHERE topic = ? AND part = 0", (topic,)
    ).fetchone()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO records(id, ts_ms, append_ms, key, value) VALUES (?, 0, 0, NULL, ?)",
        ((pid << OFFSET_BITS) + nxt, b"never-committed"),
    )
    conn.execute("UPDATE partitions SET next_offset = next_offset + 1 WHERE pid = ?", (pid,))
    print("INTXN", flush=True)
    sys.stdin.readline()
    return 1


if __name__ == "__main__":
    sys.exit(main())
