"""Runs the collector role alone in a process until SIGTERM (for the kill -9 restart test).

Usage: python -m ... collector_proc.py CONFIG
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry

from monitor.bus import open_bus
from monitor.collect.role import build
from monitor.config import load_config
from monitor.logs import setup_logging
from monitor.roles import RoleContext


def main() -> int:
    setup_logging("info")
    config = load_config(sys.argv[1])
    bus = open_bus(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    ctx = RoleContext(
        config=config, bus=bus, registry=CollectorRegistry(), config_path=Path(sys.argv[1])
    )
    signal.signal(signal.SIGHUP, lambda s, f: ctx.reload.set())
    role = build(ctx)
    try:
        role.run(stop)
    finally:
        bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
