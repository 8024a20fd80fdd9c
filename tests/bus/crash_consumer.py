"""Crash-test consumer: processes batches and commits, then stops dead in the middle of one.

    python crash_consumer.py KIND ADDRESS TOPIC GROUP [--stall-at-batch K] [--max-records N]

Prints ``GOT partition offset value`` per processed record, ``COMMITTED {"p": offset}`` after each
commit returned, and ``MIDBATCH`` when it has processed half of batch K without committing; it
then blocks on stdin until the test kills it with SIGKILL.
"""

from __future__ import annotations

import argparse
import json
import sys

from _busopen import make_bus

from monitor.bus.base import next_offsets


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind")
    ap.add_argument("address")
    ap.add_argument("topic")
    ap.add_argument("group")
    ap.add_argument("--stall-at-batch", type=int, default=3)
    ap.add_argument("--max-records", type=int, default=10)
    args = ap.parse_args()
    bus = make_bus(args.kind, args.address)
    consumer = bus.consumer(args.group, [args.topic])
    print("READY", flush=True)
    batch_no = 0
    while True:
        batch = consumer.poll(args.max_records, 1.0)
        if not batch:
            continue
        batch_no += 1
        stall = batch_no == args.stall_at_batch and len(batch) >= 2
        for i, m in enumerate(batch):
            if stall and i == len(batch) // 2:
                print("MIDBATCH", flush=True)
                sys.stdin.readline()  # the test kills us here, mid-batch and uncommitted
                return 1
            print(f"GOT {m.partition} {m.offset} {m.value.decode()}", flush=True)
        offsets = next_offsets(batch)
        consumer.commit(offsets)
        print("COMMITTED " + json.dumps({tp.partition: o for tp, o in offsets.items()}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
