"""A daemon whose one role ignores stop requests: for the grace-period and forced-exit tests."""

from __future__ import annotations

import signal
import sys
import threading
import time

from monitor.app import Daemon, install_signals
from monitor.config import load_config
from monitor.logs import setup_logging
from monitor.roles import RoleContext

# argv: grace seconds, then optionally "signal-from-role".
SIGNAL_FROM_ROLE = sys.argv[2:] == ["signal-from-role"]


class Stubborn:
    name = "stubborn"

    def __init__(self, ctx: RoleContext) -> None:
        self.release = threading.Event()

    def run(self, stop: threading.Event) -> None:
        print("role running", flush=True)
        if SIGNAL_FROM_ROLE:
            # The second Ctrl-C as the kernel may deliver it: to this thread, not the main one.
            stop.wait()
            time.sleep(0.3)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        self.release.wait()  # never set: the role ignores stop on purpose

    def ready(self) -> bool:
        return True


def main() -> int:
    setup_logging("info")
    config = load_config(overrides={"http.port": 0, "shutdown.grace_seconds": float(sys.argv[1])})
    daemon = Daemon(config, ["stubborn"], factories={"stubborn": Stubborn})
    install_signals(daemon)
    daemon.start()
    return daemon.wait()


if __name__ == "__main__":
    sys.exit(main())
