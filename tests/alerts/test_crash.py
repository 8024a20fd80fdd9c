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
from polling import wait_for

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


@pytest.mark.slow
def test_alerter_daemon_sigkilled_mid_delivery_then_restarted(
    tmp_path: Path, receiver: Receiver
) -> None:
    """`riskwire run --role alerter` on the embedded bus, killed -9 while a send is in flight."""
    from monitor.bus.embedded import EmbeddedBus
    from monitor.config import load_config

    from .kit import T0, scored

    in_flight = threading.Event()

    def respond(hit: object, n: int) -> tuple[int, dict[str, str], bytes] | None:
        if n == 3:
            in_flight.set()
            return None
        return 200, {}, b"ok"

    receiver.respond = respond
    doc = {
        "data_dir": str(tmp_path / "var"),
        "roles": ["alerter"],
        "http": {"port": 0},
        "bus": {"partitions": 2},
        "alerts": {
            "rules": [{"name": "any_negative", "match": {"sentiment": "negative"}}],
            "receivers": [{"type": "webhook", "name": "desk", "url": receiver.url}],
            "route": {"receiver": "desk"},
            "group_wait": 0,
            "group_interval": 0,
            "delivery": {"timeout_s": 5, "lease": "1s", "concurrency": 1},
        },
    }
    config = tmp_path / "riskwire.yaml"
    config.write_text(json.dumps(doc))
    cfg = load_config(config, env={})
    bus = EmbeddedBus(cfg.embedded_path, partitions=2)
    bus.ensure_topics([cfg.bus.topics.scored, cfg.bus.topics.alerts])
    p = bus.producer()
    items = [scored(f"n{i}", T0 + i, entity=f"E{i}") for i in range(20)]
    for it in items:
        p.produce(cfg.bus.topics.scored, it.key, it.to_json(), None)
    p.flush()
    p.close()
    bus.close()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    proc = start()
    try:
        assert in_flight.wait(60), proc.stderr.read1(4000) if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    again = start()
    try:
        wait_for(lambda: len(receiver.accepted()) >= 20, timeout=60, what="all 20 delivered")
        again.send_signal(signal.SIGTERM)
        assert again.wait(30) == 0
    finally:
        if again.poll() is None:
            again.kill()
    store = AlertStore(cfg.alerts.outbox(cfg.data_dir))
    ids = {row[0] for row in store._conn().execute("SELECT id FROM alerts")}
    assert store.states() == {"sent": 20}
    store.close()
    got = [h.headers["Idempotency-Key"] for h in receiver.accepted()]
    assert sorted(set(got)) == sorted(ids) and len(ids) == 20
    tries = Counter(h.headers["Idempotency-Key"] for h in receiver.all_requests())
    assert max(tries.values()) <= 2 and sum(tries.values()) == 21  # only the in-flight one twice
