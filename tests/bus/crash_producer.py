"""Crash-test producer: produces batches forever (or --batches N), printing each acknowledged batch.

    python crash_producer.py KIND ADDRESS TOPIC [--batches N] [--batch-size M] [--prefix P]

A line ``ACK id,id,...`` is printed only after ``flush()`` returned: those records were promised.
"""

from __future__ import annotations

import argparse
import itertools
import sys

from _busopen import make_bus


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind")
    ap.add_argument("address")
    ap.add_argument("topic")
    ap.add_argument("--batches", type=int, default=0, help="0: until killed")
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--prefix", default="p")
    args = ap.parse_args()
    bus = make_bus(args.kind, args.address)
    bus.ensure_topics([args.topic])
    producer = bus.producer()
    print("READY", flush=True)
    batches = itertools.count() if args.batches == 0 else range(args.batches)
    for b in batches:
        ids = [f"{args.prefix}-{b}-{i}" for i in range(args.batch_size)]
        for rid in ids:
            producer.produce(args.topic, rid, rid.encode())
        producer.flush()
        sys.stdout.write("ACK " + ",".join(ids) + "\n")
        sys.stdout.flush()
    producer.close()
    bus.close()
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
