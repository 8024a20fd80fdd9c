"""The collector role end to end: scheduler, embedded bus, state file, reload, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from monitor.bus.embedded import EmbeddedBus
from monitor.collect.config import CollectConfig, FeedConfig
from monitor.collect.role import CollectorRole, build
from monitor.collect.state import StateStore
from monitor.config import Config
from monitor.records import NewsItem
from monitor.roles import RoleContext
from polling import wait_for

from . import feeds
from .server import FeedServer, stall, static

REPO = Path(__file__).resolve().parents[2]
TOPIC = "riskwire.news.raw"


def read_all(bus_path: Path, group: str) -> list[NewsItem]:
    bus = EmbeddedBus(bus_path, partitions=2)
    try:
        consumer = bus.consumer(group, [TOPIC])
        out: list[NewsItem] = []
        while True:
            batch = consumer.poll(1000, timeout=0.2)
            if not batch:
                break
            out += [NewsItem.from_json(m.value) for m in batch]
        consumer.close()
        return out
    finally:
        bus.close()


class Items:
    """A feed whose items the test appends to (served without validators: always a 200)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def add(self, n: int, title: str) -> None:
        self.items.insert(0, (f"g{n}", f"{title} {n}", f"https://live.example/story/{n}"))

    def __call__(self, h) -> None:  # type: ignore[no-untyped-def]
        static(feeds.rss(self.items))(h)


_WORDS = [
    "Bluefin Payments faces probe",
    "Helios Semiconductor wins chip order",
    "Northwind Bancorp lifts dividend",
    "Pinecrest Pharma trial succeeds",
    "Meridian Energy signs LNG pact",
    "Atlas Retail shuts stores",
    "Vantage Air adds routes",
    "Quarry Mining output falls",
    "Corvid Logistics buys rival",
    "Solano Foods recalls snacks",
]


def test_role_publishes_on_schedule_and_reloads_feeds(server: FeedServer, tmp_path: Path) -> None:
    # (Not RSS2: its <ttl> of 30 minutes would rightly slow the polling down.)
    a = server.route("/a", static(feeds.ATOM))
    b = server.route("/b", static(feeds.RSS1))
    registry_feeds = [FeedConfig(id="a", url=a, interval_s=1)]
    collect = CollectConfig(interval_jitter=0)
    config = Config(
        data_dir=tmp_path,
        collect=collect.model_copy(update={"feeds": tuple(registry_feeds)}),
        bus={"partitions": 2},
    )  # type: ignore[arg-type]
    bus = EmbeddedBus(tmp_path / "bus.sqlite", partitions=2)
    registry = CollectorRegistry()
    role = CollectorRole(
        config,
        bus,
        registry,
        reload_feeds=lambda: (collect, tuple(registry_feeds)),
    )
    stop = threading.Event()
    t = threading.Thread(target=role.run, args=(stop,))
    t.start()
    try:
        wait_for(role.ready, what="ready")
        wait_for(lambda: server.hits["/a"] >= 2, what="two polls of a")
        registry_feeds[:] = [FeedConfig(id="b", url=b, interval_s=1)]
        role.reload_event.set()
        wait_for(lambda: server.hits["/b"] >= 2, what="b polled after reload")
        hits_a = server.hits["/a"]
        wait_for(lambda: server.hits["/b"] >= 4, what="more polls of b")
        assert server.hits["/a"] <= hits_a + 1  # removed: at most one poll was in flight
        assert not role.reload_event.is_set()
        assert (
            registry.get_sample_value("riskwire_feed_items_total", {"feed": "a", "result": "new"})
            == 1
        )
    finally:
        stop.set()
        t.join(30)
        bus.close()
    assert not t.is_alive() and not role.ready()
    titles = sorted(i.title for i in read_all(tmp_path / "bus.sqlite", "check"))
    assert len(titles) == 2  # 1 from a, 1 from b, each once


def test_build_from_context_uses_the_core_items_counter(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path)
    bus = EmbeddedBus(tmp_path / "bus.sqlite", partitions=1)
    try:
        ctx = RoleContext(config=config, bus=bus, registry=CollectorRegistry())
        role = build(ctx)
        assert role.name == "collector" and not role.ready()
        role._count_items(3)
        assert ctx.registry.get_sample_value("riskwire_items_total", {"stage": "collect"}) == 3
    finally:
        bus.close()


def test_kill_9_then_restart_neither_republishes_nor_misses(
    server: FeedServer, tmp_path: Path
) -> None:
    live = Items()
    for n in range(1, 6):
        live.add(n, _WORDS[n % len(_WORDS)])
    url = server.route("/live", live)
    cfg_path = tmp_path / "riskwire.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "var"),
                "bus": {"partitions": 2},
                "collect": {
                    "interval_s": 1,
                    "interval_jitter": 0,
                    "feeds": [{"id": "live", "url": url}],
                },
            }
        )
    )
    bus_path = tmp_path / "var" / "bus.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("collector_proc.py")), str(cfg_path)],
            env=env,
            cwd=str(REPO),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def seen() -> int:
        p = tmp_path / "var" / "collector.sqlite"
        if not p.exists():
            return 0
        store = StateStore(p)
        try:
            return store.count_seen()
        finally:
            store.close()

    proc = start()
    try:
        wait_for(lambda: seen() == 5, what="5 items seen")
        hits = server.hits["/live"]
        wait_for(lambda: server.hits["/live"] >= hits + 2, what="two more polls")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        for n in range(6, 9):
            live.add(n, _WORDS[n % len(_WORDS)])
        proc = start()
        wait_for(lambda: seen() == 8, what="8 items seen after restart")
        hits = server.hits["/live"]
        wait_for(lambda: server.hits["/live"] >= hits + 2, what="two polls after restart")
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        assert proc.returncode == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    items = read_all(bus_path, "restart-check")
    ids = [i.id for i in items]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert sorted(int(i.title.rsplit(" ", 1)[1]) for i in items) == list(range(1, 9))


def test_sighup_rereads_the_config_file_and_swaps_feeds(server: FeedServer, tmp_path: Path) -> None:
    a = server.route("/a", static(feeds.ATOM))
    b = server.route("/b", static(feeds.RSS1))
    cfg_path = tmp_path / "riskwire.yaml"

    def write(feed_list: list[dict[str, object]]) -> None:
        cfg_path.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(tmp_path / "var"),
                    "bus": {"partitions": 1},
                    "collect": {"interval_s": 1, "interval_jitter": 0, "feeds": feed_list},
                }
            )
        )

    write([{"id": "a", "url": a}])
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("collector_proc.py")), str(cfg_path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=str(REPO),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: server.hits["/a"] >= 2, what="a polled")
        write([{"id": "b", "url": b}])
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: server.hits["/b"] >= 2, what="b polled after SIGHUP")
        hits_a = server.hits["/a"]
        wait_for(lambda: server.hits["/b"] >= 4, what="b polled again")
        assert server.hits["/a"] <= hits_a + 1
        assert proc.poll() is None  # reloaded in place, not restarted
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_stop_does_not_wait_for_a_stalled_feed(server: FeedServer, tmp_path: Path) -> None:
    # The stalled fetch would hold shutdown for its read timeout (15 s) without the abort;
    # the daemon's grace period is 10 s.
    url = server.route("/stall", stall(server.release))
    config = Config(
        data_dir=tmp_path,
        collect=CollectConfig(interval_jitter=0).model_copy(
            update={"feeds": (FeedConfig(id="s", url=url, interval_s=1),)}
        ),
        bus={"partitions": 2},
    )  # type: ignore[arg-type]
    bus = EmbeddedBus(tmp_path / "bus.sqlite", partitions=2)
    role = CollectorRole(config, bus, CollectorRegistry())
    stop = threading.Event()
    t = threading.Thread(target=role.run, args=(stop,))
    t.start()
    try:
        wait_for(lambda: server.hits["/stall"] >= 1, what="the stalled fetch to start")
        started = time.monotonic()
        stop.set()
        t.join(12)
        assert not t.is_alive(), "the collector is still waiting for the stalled feed"
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        server.release.set()
        t.join(30)
        bus.close()
