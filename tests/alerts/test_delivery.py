"""Delivery against real HTTP receivers on 127.0.0.1: outages, 5xx, 429, 400, stalls, fallback."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitor.alerts.config import AlertsConfig
from monitor.alerts.delivery import Deliverer
from monitor.alerts.engine import fingerprint_of
from monitor.alerts.metrics import AlertMetrics
from monitor.alerts.routing import Router
from monitor.alerts.signature import verify
from monitor.alerts.store import AlertStore
from monitor.records import Alert, AlertItem
from polling import wait_for

from .kit import T0, FakeClock, Receiver

SECRET = "s3cret-for-tests"


def make_alert(
    n: int, *, entity: str = "ACME", rule: str = "burst", status: str = "firing"
) -> Alert:
    fp = fingerprint_of(rule, entity)
    return Alert(
        id=f"{fp}-{n:04d}-{status}",
        fingerprint=fp,
        rule=rule,
        severity="warning",
        status=status,  # type: ignore[arg-type]
        entity=entity,
        title=f"{rule}: {entity} #{n}",
        summary="3 items in 1h",
        items=(AlertItem(id=f"i{n}", url=f"https://news.example/{n}", title=f"headline {n}"),),
        starts_at=datetime.fromtimestamp(T0 + n, UTC),
        explain={"conditions": [{"condition": "count", "value": 3}]},
    )


@dataclass
class Rig:
    cfg: AlertsConfig
    store: AlertStore
    deliverer: Deliverer
    router: Router
    metrics: AlertMetrics
    clock: Any

    def send(self, alerts: list[Alert]) -> None:
        for a in alerts:
            self.store.enqueue(a, self.router.route(a), now=self.clock())
        self.deliverer.wake()

    def outcome(self, name: str, outcome: str) -> float:
        v = self.metrics.deliveries.labels(receiver=name, outcome=outcome)._value.get()
        return float(v)


def rig(
    tmp_path: Path,
    receivers: list[dict[str, Any]],
    route: dict[str, Any],
    *,
    clock: Any = None,
    start: bool = True,
    **alerts: Any,
) -> Rig:
    import time

    doc = {
        "receivers": receivers,
        "route": route,
        "group_wait": 0,
        "group_interval": 0,
        "repeat_interval": 0,
        "delivery": {
            "timeout_s": 0.5,
            "backoff_base": "5ms",
            "backoff_max": "50ms",
            "max_age": "60s",
            "poll_interval": "50ms",
            "lease": "5s",
            "concurrency": 2,
        },
        **alerts,
    }
    cfg = AlertsConfig.model_validate(doc)
    store = AlertStore(tmp_path / "alerts.sqlite")
    metrics = AlertMetrics.create(CollectorRegistry())
    clk = clock or time.time
    d = Deliverer.from_config(
        cfg, store, data_dir=tmp_path, metrics=metrics, clock=clk, rng=random.Random(3)
    )
    r = Rig(cfg, store, d, Router.from_config(cfg), metrics, clk)
    if start:
        d.start()
    return r


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.deliverer.stop(5)
        r.store.close()


def hook(url: str, **kw: Any) -> dict[str, Any]:
    return {"type": "webhook", "name": "desk", "url": url, "secret": SECRET, **kw}


def keys(hits: list[Any]) -> list[str]:
    return [h.headers["Idempotency-Key"] for h in hits]


def test_receiver_down_then_back_gets_everything_in_order(tmp_path: Path, rigs: list[Rig]) -> None:
    recv = Receiver().start()
    port = recv.port
    recv.stop()  # down: connections are refused
    r = rig(tmp_path, [hook(f"http://127.0.0.1:{port}/hook")], {"receiver": "desk"})
    rigs.append(r)
    alerts = [make_alert(i, entity=("ACME" if i % 2 else "GLOBEX")) for i in range(10)]
    r.send(alerts)
    wait_for(lambda: r.outcome("desk", "retry") >= 6, what="failed attempts while down")
    assert r.store.states().get("sent", 0) == 0
    back = Receiver(port=port).start()
    try:
        wait_for(lambda: len(back.accepted()) >= 10, what="all delivered after the outage")
        got = keys(back.accepted())
        assert sorted(got) == sorted(a.id for a in alerts)
        for entity in ("ACME", "GLOBEX"):
            want = [a.id for a in alerts if a.entity == entity]
            assert [k for k in got if k in want] == want  # in order per fingerprint
        wait_for(lambda: r.store.states() == {"sent": 10}, what="all recorded as sent")
    finally:
        back.stop()


def test_intermittent_500s_are_retried_until_delivered(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    receiver.respond = lambda hit, n: (500, {}, b"boom") if n % 2 == 0 else (200, {}, b"ok")
    r = rig(tmp_path, [hook(receiver.url)], {"receiver": "desk"})
    rigs.append(r)
    alerts = [make_alert(i) for i in range(4)]
    r.send(alerts)
    wait_for(lambda: len(receiver.accepted()) == 4, what="delivered after 500s")
    assert keys(receiver.accepted()) == [a.id for a in alerts]
    assert r.outcome("desk", "retry") >= 1 and r.outcome("desk", "dead") == 0


def test_429_retry_after_is_honoured(tmp_path: Path, rigs: list[Rig], receiver: Receiver) -> None:
    receiver.respond = lambda hit, n: (
        (429, {"Retry-After": "1"}, b"slow down")
        if n == 0
        else (
            200,
            {},
            b"ok",
        )
    )
    r = rig(tmp_path, [hook(receiver.url)], {"receiver": "desk"})
    rigs.append(r)
    r.send([make_alert(1)])
    wait_for(lambda: len(receiver.accepted()) == 1, what="delivered after 429")
    first, second = receiver.all_requests()[:2]
    assert second.at - first.at >= 1.0  # backoff alone would be a few ms
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.headers["X-Riskwire-Delivery"] != second.headers["X-Riskwire-Delivery"]


def test_400_is_final_dead_lettered_with_reason_and_redeliverable(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    bad = make_alert(1)
    good = make_alert(2, entity="GLOBEX")
    refused: list[str] = []

    def respond(hit: Any, n: int) -> tuple[int, dict[str, str], bytes]:
        if json.loads(hit.body)["id"] == bad.id and not refused:
            refused.append(bad.id)
            return 400, {}, b"bad payload"
        return 200, {}, b"ok"

    receiver.respond = respond
    r = rig(tmp_path, [hook(receiver.url)], {"receiver": "desk"})
    rigs.append(r)
    r.send([bad, good])
    wait_for(lambda: len(r.store.dead()) == 1 and len(receiver.accepted()) == 1, what="dead")
    dead = r.store.dead()[0]
    assert dead.alert_id == bad.id and dead.reason == "HTTP 400: bad payload"
    assert len([h for h in receiver.all_requests() if h.headers["Idempotency-Key"] == bad.id]) == 1
    assert r.outcome("desk", "dead") == 1
    # The operator fixes the receiver and redelivers.
    assert r.store.redeliver(now=r.clock(), alert_id=bad.id) == 1
    r.deliverer.wake()
    wait_for(lambda: len(receiver.accepted()) == 2, what="redelivered")
    assert r.store.dead() == []


def test_stalled_receiver_times_out_then_retry_succeeds(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    receiver.respond = lambda hit, n: None if n == 0 else (200, {}, b"ok")
    r = rig(tmp_path, [hook(receiver.url, timeout_s=0.3)], {"receiver": "desk"})
    rigs.append(r)
    a = make_alert(1)
    r.send([a])
    wait_for(lambda: len(receiver.accepted()) == 1, what="delivered after a timeout")
    reqs = receiver.all_requests()
    assert len(reqs) == 2 and keys(reqs) == [a.id, a.id]
    # Arrival times are stamped by the receiver, and the first request arrives a little after the
    # client's timeout clock started: allow that skew, but not a retry that skipped the wait.
    assert reqs[1].at - reqs[0].at >= 0.25


def test_signature_and_headers_verify(tmp_path: Path, rigs: list[Rig], receiver: Receiver) -> None:
    r = rig(tmp_path, [hook(receiver.url)], {"receiver": "desk"})
    rigs.append(r)
    a = make_alert(1)
    r.send([a])
    wait_for(lambda: len(receiver.accepted()) == 1)
    hit = receiver.accepted()[0]
    verify(SECRET.encode(), hit.body, hit.headers["X-Riskwire-Signature"], now=hit.at)
    assert json.loads(hit.body)["id"] == a.id
    assert json.loads(hit.body)["explain"]["conditions"][0]["condition"] == "count"


def test_gives_up_after_max_age_with_an_injected_clock(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    receiver.respond = lambda hit, n: (503, {}, b"unavailable")
    clock = FakeClock()
    r = rig(tmp_path, [hook(receiver.url)], {"receiver": "desk"}, clock=clock, start=False)
    rigs.append(r)
    r.send([make_alert(1)])
    assert r.deliverer.step("desk")  # attempt 1: 503 -> retry
    assert r.store.dead() == []
    clock.advance(61)  # past max_age (60 s)
    assert r.deliverer.step("desk")
    dead = r.store.dead()
    assert len(dead) == 1 and dead[0].reason.startswith("gave up after 2 attempts")


def test_repeat_interval_dedups_and_log_is_written_only_after_success(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    clock = FakeClock()
    receiver.respond = lambda hit, n: (500, {}, b"down") if n == 0 else (200, {}, b"ok")
    r = rig(
        tmp_path,
        [hook(receiver.url)],
        {"receiver": "desk"},
        clock=clock,
        start=False,
        repeat_interval="1h",
    )
    rigs.append(r)
    first = make_alert(1)
    r.send([first])
    r.deliverer.step("desk")  # 500
    assert r.store.last_notified("desk", first.fingerprint) is None
    clock.advance(1)
    r.deliverer.step("desk")
    assert r.store.last_notified("desk", first.fingerprint) == (first.id, "firing", clock())
    r.send([make_alert(2)])  # same fingerprint, 1 s later: within the repeat interval
    r.deliverer.step("desk")
    assert len(receiver.accepted()) == 1 and r.store.states()["suppressed"] == 1
    clock.advance(3601)
    r.send([make_alert(3)])
    r.deliverer.step("desk")
    assert keys(receiver.accepted()) == [first.id, make_alert(3).id]
    # A resolved notification for a notified fingerprint is sent.
    r.send([make_alert(4, status="resolved")])
    r.deliverer.step("desk")
    assert len(receiver.accepted()) == 3


def test_silenced_alerts_are_recorded_not_sent(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    clock = FakeClock()
    r = rig(tmp_path, [hook(receiver.url)], {"receiver": "desk"}, clock=clock, start=False)
    rigs.append(r)
    s = r.store.add_silence("ACME", None, now=clock(), duration_s=7200, reason="known issue")
    r.store.add_silence("GLOBEX", "other_rule", now=clock(), duration_s=7200, reason="x")
    r.send([make_alert(1), make_alert(2, entity="GLOBEX")])
    while r.deliverer.step("desk"):
        pass
    assert keys(receiver.accepted()) == [make_alert(2, entity="GLOBEX").id]
    assert r.store.states() == {"sent": 1, "silenced": 1}
    assert r.metrics.silenced.labels(rule="burst", reason="silenced")._value.get() == 1
    r.store.expire_silence(s.id, now=clock())
    r.send([make_alert(3)])
    r.deliverer.step("desk")
    assert len(receiver.accepted()) == 2


def test_fallback_receiver_gets_what_the_primary_keeps_failing(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    receiver.respond = lambda hit, n: (502, {}, b"bad gateway")
    receivers = [hook(receiver.url), {"type": "file", "name": "backup", "path": "fallback.jsonl"}]
    r = rig(tmp_path, receivers, {"receiver": "desk", "fallback": "backup", "fallback_after": 0})
    rigs.append(r)
    a = make_alert(1)
    r.send([a])
    out = tmp_path / "fallback.jsonl"
    wait_for(lambda: out.exists() and out.read_text().strip() != "", what="fallback written")
    assert json.loads(out.read_text().splitlines()[0])["id"] == a.id
    assert r.store.states("desk") == {"pending": 1}  # the primary keeps retrying


def test_group_notifiers_send_one_message_per_group(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    clock = FakeClock()
    receivers = [
        {"type": "slack", "name": "slack", "url": receiver.url, "channel": "#risk"},
        {"type": "teams", "name": "teams", "url": receiver.url},
        {"type": "alertmanager", "name": "am", "url": receiver.url},
    ]
    route = {
        "receiver": "slack",
        "group_by": ["entity"],
        "group_wait": "30s",
        "routes": [
            {"match": {"severity": "warning"}, "receiver": "teams", "continue": True},
            {"match_re": {"entity": "AC.*"}, "receiver": "am"},
        ],
    }
    r = rig(tmp_path, receivers, route, clock=clock, start=False)
    rigs.append(r)
    a1, a2 = make_alert(1), make_alert(2, rule="drop")
    r.send([a1, a2])
    assert not r.deliverer.step("teams")  # group_wait not over yet
    clock.advance(30)
    for name in ("slack", "teams", "am"):
        while r.deliverer.step(name):
            pass
    bodies = [json.loads(h.body) for h in receiver.accepted()]
    assert len(bodies) == 2  # teams (continue) + am; slack's root route was not reached
    teams = next(b for b in bodies if isinstance(b, dict))
    card = teams["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and len(card["body"]) == 4
    am = next(b for b in bodies if isinstance(b, list))
    assert [x["labels"]["alertname"] for x in am] == ["burst", "drop"]
    assert am[0]["labels"]["entity"] == "ACME" and am[0]["startsAt"].endswith("Z")
    # Slack, for an alert no child route takes.
    r.send([make_alert(3, entity="ZED", rule="other").model_copy(update={"severity": "info"})])
    clock.advance(30)
    assert r.deliverer.step("slack")
    slack = json.loads(receiver.accepted()[-1].body)
    assert slack["channel"] == "#risk" and "ZED" in slack["text"]


def test_jinja2_template_renders_the_webhook_body(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    tmpl = '{"text": "{{ severity|upper }} {{ entity }}: {{ items[0].title }}"}'
    r = rig(tmp_path, [hook(receiver.url, template=tmpl)], {"receiver": "desk"})
    rigs.append(r)
    r.send([make_alert(1)])
    wait_for(lambda: len(receiver.accepted()) == 1)
    assert json.loads(receiver.accepted()[0].body) == {"text": "WARNING ACME: headline 1"}


def test_inhibition_holds_warnings_while_a_critical_fires_for_the_entity(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    clock = FakeClock()
    inhibit = [{"source": {"severity": "critical"}, "target": {"severity": "warning"}}]
    r = rig(
        tmp_path,
        [hook(receiver.url)],
        {"receiver": "desk"},
        clock=clock,
        start=False,
        inhibit_rules=inhibit,
    )
    rigs.append(r)
    critical = make_alert(1, rule="fraud").model_copy(update={"severity": "critical"})
    r.send([critical])
    r.deliverer.step("desk")
    r.send([make_alert(2), make_alert(3, entity="GLOBEX")])  # warnings: ACME held, GLOBEX not
    while r.deliverer.step("desk"):
        pass
    sent = keys(receiver.accepted())
    assert sent == [critical.id, make_alert(3, entity="GLOBEX").id]
    assert r.store.states() == {"sent": 2, "inhibited": 1}
    # Once the critical resolves, the entity's warnings flow again.
    r.send([critical.model_copy(update={"id": "resolved-1", "status": "resolved"})])
    r.deliverer.step("desk")
    r.send([make_alert(4)])
    r.deliverer.step("desk")
    assert keys(receiver.accepted())[-1] == make_alert(4).id


def test_two_alerter_processes_on_one_outbox_send_each_alert_once_in_order(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    """Two Deliverers (as two processes would) share the SQLite outbox through group leases."""
    receiver.respond = lambda hit, n: (500, {}, b"flaky") if n % 5 == 0 else (200, {}, b"ok")
    a = rig(tmp_path, [hook(receiver.url)], {"receiver": "desk"}, start=False)
    b = rig(tmp_path, [hook(receiver.url)], {"receiver": "desk"}, start=False)
    rigs.extend([a, b])
    alerts = [make_alert(i, entity=f"E{i % 4}") for i in range(40)]
    a.send(alerts[:20])
    b.send(alerts[20:])
    a.deliverer.start()
    b.deliverer.start()
    wait_for(lambda: a.store.states() == {"sent": 40}, what="all sent once")
    got = keys(receiver.accepted())
    assert sorted(got) == sorted(x.id for x in alerts)  # nobody sent twice
    for e in range(4):
        want = [x.id for x in alerts if x.entity == f"E{e}"]
        assert [k for k in got if k in want] == want


def test_notification_log_dedups_across_a_restart(
    tmp_path: Path, rigs: list[Rig], receiver: Receiver
) -> None:
    clock = FakeClock()
    doc = {"clock": clock, "start": False, "repeat_interval": "1h"}
    r1 = rig(tmp_path, [hook(receiver.url)], {"receiver": "desk"}, **doc)
    r1.send([make_alert(1)])
    r1.deliverer.step("desk")
    r1.deliverer.stop()
    r1.store.close()
    clock.advance(60)
    r2 = rig(tmp_path, [hook(receiver.url)], {"receiver": "desk"}, **doc)  # "restarted"
    rigs.append(r2)
    r2.send([make_alert(2), make_alert(1)])  # same fingerprint; and a replay of alert 1
    while r2.deliverer.step("desk"):
        pass
    assert len(receiver.accepted()) == 1
    assert r2.store.states() == {"sent": 1, "suppressed": 1}  # alert 1 was already stored
