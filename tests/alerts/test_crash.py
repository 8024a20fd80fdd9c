"""The delivery process SIGKILLed with a full outbox: after a restart everything arrives.

A request the receiver got but never answered (the process died mid-send) is sent again with
the same Idempotency-Key, so a receiver that de-duplicates on it sees each alert once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from monitor.alerts.config import AlertsConfig
from monitor.alerts.routing import Router
from monitor.alerts.store import AlertStore

from .kit import Receiver
from .test_delivery import make_alert

ROOT = Path(__file__).resolve().parents[2]


def _start(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "alerts", "deliver", "--config", str(config), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
def test_sigkill_with_full_outbox_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    in_flight = threading.Event()

    def respond(hit: object, n: int) -> tuple[int, dict[str, str], bytes] | None:
        if n == 5:
            in_flight.set()
            return None  # hold this one: the process dies while waiting for our answer
        return 200, {}, b"ok"

    receiver.respond = respond
    alerts_doc = {
        "receivers": [{"type": "webhook", "name": "desk", "url": receiver.url}],
        "route": {"receiver": "desk"},
        "group_wait": 0,
        "group_interval": 0,
        "delivery": {"timeout_s": 5, "lease": "1s", "concurrency": 1, "backoff_base": "10ms"},
    }
    config = tmp_path / "riskwire.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"), "alerts": alerts_doc}))
    cfg = AlertsConfig.model_validate(alerts_doc)
    store = AlertStore(cfg.outbox(tmp_path / "var"))
    router = Router.from_config(cfg)
    alerts = [make_alert(i, entity=f"E{i}") for i in range(30)]
    for a in alerts:
        store.enqueue(a, router.route(a), now=0.0)
    store.close()

    proc = _start(config)
    try:
        assert in_flight.wait(30), proc.stderr.read1(4000) if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert len(receiver.accepted()) == 5

    again = _start(config, "--until-empty")
    try:
        assert again.wait(60) == 0
    finally:
        if again.poll() is None:
            again.kill()
    got = receiver.accepted()
    assert sorted({h.headers["Idempotency-Key"] for h in got}) == sorted(a.id for a in alerts)
    tries = Counter(h.headers["Idempotency-Key"] for h in receiver.all_requests())
    repeated = [k for k, n in tries.items() if n > 1]
    assert repeated == [alerts[5].id]  # the one in flight at the kill, same key both times
    for h in receiver.all_requests():
        assert json.loads(h.body)["id"] == h.headers["Idempotency-Key"]
    check = AlertStore(cfg.outbox(tmp_path / "var"))
    assert check.states() == {"sent": 30}
    check.close()
