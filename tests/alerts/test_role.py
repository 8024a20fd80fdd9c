"""The alerter role on the embedded bus: scored records in, alerts on the topic and delivered."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from monitor.alerts.role import GROUP, build
from monitor.alerts.store import AlertStore
from monitor.bus.base import Message
from monitor.bus.embedded import EmbeddedBus
from monitor.config import Config
from monitor.records import Alert
from monitor.roles import RoleContext
from polling import wait_for

from .kit import T0, Receiver, scored


def config(tmp_path: Path, receiver: Receiver) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(tmp_path / "var"),
            "bus": {"partitions": 2},
            "alerts": {
                "rules": [
                    {
                        "name": "burst",
                        "match": {"sentiment": "negative"},
                        "window": {"size": "1h", "allowed_lateness": "10m"},
                        "condition": {"count": {"min": 3}},
                    },
                    {
                        "name": "fraud",
                        "match": {"risk": [{"tag": "fraud_misconduct", "min_p": 0.8}]},
                        "severity": "critical",
                    },
                ],
                "receivers": [
                    {"type": "webhook", "name": "desk", "url": receiver.url},
                    {"type": "file", "name": "log", "path": "alerts.jsonl"},
                ],
                "route": {
                    "receiver": "log",
                    "routes": [{"match": {"severity": "critical"}, "receiver": "desk"}],
                },
                "group_wait": 0,
                "group_interval": 0,
                "delivery": {"poll_interval": "50ms", "timeout_s": 2},
            },
        }
    )


def run_role(ctx: RoleContext) -> tuple[Any, threading.Event, threading.Thread]:
    role = build(ctx)
    stop = threading.Event()
    t = threading.Thread(target=role.run, args=(stop,), daemon=True)
    t.start()
    wait_for(role.ready, what="alerter ready")
    return role, stop, t


def read_topic(bus: EmbeddedBus, topic: str, n: int) -> list[Message]:
    c = bus.consumer("reader", [topic])
    got: list[Message] = []
    wait_for(lambda: bool(got.extend(c.poll(500, 0.1))) or len(got) >= n, what=f"{n} on {topic}")
    c.close()
    return got


def test_alerter_role_end_to_end_and_replay_is_idempotent(
    tmp_path: Path, receiver: Receiver
) -> None:
    cfg = config(tmp_path, receiver)
    bus = EmbeddedBus(cfg.embedded_path, partitions=2)
    topics = cfg.bus.topics
    bus.ensure_topics([topics.scored, topics.alerts])
    p = bus.producer()
    items = [scored(f"n{i}", T0 + i * 60) for i in range(3)]
    items.append(scored("f1", T0 + 200, entity="GLOBEX", risk=(("fraud_misconduct", 0.95),)))
    for it in items:
        p.produce(topics.scored, it.key, it.to_json(), int(it.published_at.timestamp() * 1000))
    p.produce(topics.scored, b"x", b"{not json", None)
    p.flush()

    ctx = RoleContext(config=cfg, bus=bus, registry=CollectorRegistry())
    role, stop, t = run_role(ctx)
    out = cfg.data_dir / "alerts.jsonl"
    try:
        wait_for(lambda: len(receiver.accepted()) == 1, what="critical alert at the desk")
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 1, what="file")
    finally:
        stop.set()
        t.join(15)
    assert not t.is_alive()
    fraud = json.loads(receiver.accepted()[0].body)
    assert fraud["rule"] == "fraud" and fraud["entity"] == "GLOBEX"
    burst = json.loads(out.read_text())
    assert burst["rule"] == "burst" and burst["explain"]["values"]["count"] == 3
    on_topic = [Alert.from_json(m.value) for m in read_topic(bus, topics.alerts, 2)]
    assert sorted(a.rule for a in on_topic) == ["burst", "fraud"]
    assert len(read_topic(bus, topics.scored + ".dlq", 1)) == 1
    reg = ctx.registry
    assert (
        reg.get_sample_value(
            "riskwire_alerts_total", {"rule": "burst", "severity": "warning", "status": "firing"}
        )
        == 1
    )  # noqa: E501
    assert (
        reg.get_sample_value(
            "riskwire_webhook_deliveries_total", {"receiver": "desk", "outcome": "sent"}
        )
        == 1
    )  # noqa: E501

    # Replay everything (as after a crash before the commit): nothing is raised or sent again.
    c = bus.consumer(GROUP, [topics.scored])
    wait_for(lambda: bool(c.poll(1, 0.1)) or bool(c.assignment()), what="assignment")
    c.seek_to_beginning()
    msgs: list[Message] = []
    wait_for(lambda: bool(msgs.extend(c.poll(500, 0.1))) or len(msgs) >= 5, what="replay")
    ctx2 = RoleContext(config=cfg, bus=bus, registry=CollectorRegistry())
    role2 = build(ctx2)
    producer = bus.producer()
    assert role2.process(msgs, producer, c) == []
    c.close()
    producer.close()
    store = AlertStore(cfg.alerts.outbox(cfg.data_dir))
    assert store.states() == {"sent": 2}
    store.close()
    role2.store.close()
    bus.close()


def test_alerts_stored_but_not_yet_on_the_topic_are_produced_at_start(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A crash between the outbox commit and the bus flush: the restart publishes the alert."""
    from .test_delivery import make_alert

    cfg = config(tmp_path, receiver)
    store = AlertStore(cfg.alerts.outbox(cfg.data_dir))
    lost = make_alert(7, entity="GLOBEX")
    store.commit_batch([(lost, [])], [], now=T0)
    store.close()
    bus = EmbeddedBus(cfg.embedded_path, partitions=2)
    ctx = RoleContext(config=cfg, bus=bus, registry=CollectorRegistry())
    _role, stop, t = run_role(ctx)
    try:
        got = [Alert.from_json(m.value) for m in read_topic(bus, cfg.bus.topics.alerts, 1)]
    finally:
        stop.set()
        t.join(15)
    assert [a.id for a in got] == [lost.id]
    check = AlertStore(cfg.alerts.outbox(cfg.data_dir))
    assert check.unproduced() == []
    check.close()
    bus.close()


def test_a_window_continues_across_a_role_restart(tmp_path: Path, receiver: Receiver) -> None:
    cfg = config(tmp_path, receiver)
    bus = EmbeddedBus(cfg.embedded_path, partitions=2)
    topics = cfg.bus.topics
    bus.ensure_topics([topics.scored, topics.alerts])
    p = bus.producer()

    def feed(*items: Any) -> list[Alert]:
        for it in items:
            p.produce(topics.scored, it.key, it.to_json(), None)
        p.flush()
        c = bus.consumer(GROUP, [topics.scored])
        got: list[Message] = []
        wait_for(lambda: bool(got.extend(c.poll(500, 0.1))) or len(got) >= len(items))
        role = build(RoleContext(config=cfg, bus=bus, registry=CollectorRegistry()))
        out = bus.producer()
        raised = role.process(got, out, c)  # evaluates, stores, saves windows, commits
        c.close()
        out.close()
        role.store.close()
        return raised

    assert feed(scored("a", T0), scored("b", T0 + 60)) == []
    raised = feed(scored("c", T0 + 120))  # a new role, the same outbox: the window goes on
    assert [(a.rule, a.explain["values"]["count"]) for a in raised] == [("burst", 3)]
    p.close()
    bus.close()


def test_sighup_reload_picks_up_a_new_rule(tmp_path: Path, receiver: Receiver) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: fraud\n    match: {risk: [{tag: fraud_misconduct}]}\n")
    main = tmp_path / "riskwire.yaml"
    main.write_text(
        f"data_dir: {tmp_path / 'var'}\nalerts:\n  rules_file: {rules}\n"
        "  receivers: [{type: file, name: log, path: alerts.jsonl}]\n"
        "  route: {receiver: log}\n  group_wait: 0\n"
    )
    from monitor.config import load_config

    cfg = load_config(main, env={})
    bus = EmbeddedBus(cfg.embedded_path, partitions=1)
    bus.ensure_topics([cfg.bus.topics.scored, cfg.bus.topics.alerts])
    ctx = RoleContext(config=cfg, bus=bus, registry=CollectorRegistry(), config_path=main)
    role, stop, t = run_role(ctx)
    p = bus.producer()
    try:
        assert [r.name for r in role.engine.rules] == ["fraud"]
        rules.write_text(
            "rules:\n  - name: fraud\n    match: {risk: [{tag: fraud_misconduct}]}\n"
            "  - name: any_positive\n    match: {sentiment: positive}\n"
        )
        ctx.reload.set()
        wait_for(lambda: not ctx.reload.is_set(), what="reload handled")
        assert [r.name for r in role.engine.rules] == ["fraud", "any_positive"]
        it = scored("up1", T0, label="positive")
        p.produce(cfg.bus.topics.scored, it.key, it.to_json(), None)
        p.flush()
        out = cfg.data_dir / "alerts.jsonl"
        wait_for(lambda: out.exists() and "any_positive" in out.read_text(), what="new rule")
    finally:
        stop.set()
        t.join(15)
        p.close()
        bus.close()
