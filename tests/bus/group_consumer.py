"""A consumer-group member in its own process, for the multi-process tests.

    python group_consumer.py KIND ADDRESS TOPIC GROUP

Prints ``GOT value`` per record, commits after each batch, and on SIGTERM finishes its batch,
commits, leaves the group and prints ``BYE``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from _busopen import make_bus

from monitor.bus.base import next_offsets


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind")
    ap.add_argument("address")
    ap.add_argument("topic")
    ap.add_argument("group")
    args = ap.parse_args()
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    bus = make_bus(args.kind, args.address)
    consumer = bus.consumer(args.group, [args.topic])
    print("READY", flush=True)
    while not stop.is_set():
        batch = consumer.poll(50, 0.2)
        if batch:
            sys.stdout.write("".join(f"GOT {m.value.decode()}\n" for m in batch))
            sys.stdout.flush()
            consumer.commit(next_offsets(batch))
    consumer.close()
    bus.close()
    print("BYE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
