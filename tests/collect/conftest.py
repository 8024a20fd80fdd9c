"""Fixtures of the collector tests: a real HTTP server, a fake clock, a collector on a real
embedded bus and a real state file."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.bus.embedded import EmbeddedBus
from monitor.collect.collector import Collector
from monitor.collect.config import CollectConfig
from monitor.collect.entities import EntityMatcher, WatchEntity, Watchlist
from monitor.collect.metrics import CollectMetrics
from monitor.collect.publish import Publisher
from monitor.collect.role import build_fetcher
from monitor.collect.state import StateStore
from monitor.records import NewsItem

from .server import FeedServer

TOPIC = "riskwire.news.raw"


class FakeClock:
    """Unix seconds, starting at 2026-11-25T00:00Z (after the fixtures' dates)."""

    def __init__(self, start: float = 1_795_564_800.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


WATCHLIST = Watchlist(
    entities=(
        WatchEntity(id="BLFN", name="Bluefin Payments", ticker="BLFN", aliases=("Bluefin",)),
        WatchEntity(id="HLSM", name="Helios Semiconductor", ticker="HLSM", aliases=("Helios",)),
        WatchEntity(id="NWB", name="Northwind Bancorp", ticker="NWB"),
        WatchEntity(id="PCRX", name="Pinecrest Pharma", ticker="PCRX"),
        WatchEntity(id="MRDN", name="Meridian Energy", ticker="MRDN"),
        WatchEntity(id="ATLR", name="Atlas Retail", ticker="ATLR"),
    )
)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    s = FeedServer().start()
    yield s
    s.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Harness:
    """A collector wired to a real EmbeddedBus and a real state file."""

    def __init__(self, tmp: Path, clock: FakeClock, **overrides: object) -> None:
        doc: dict[str, object] = {
            "interval_s": 60,
            "http": {"connect_timeout_s": 1, "read_timeout_s": 0.5, "total_timeout_s": 3},
            "backoff": {"base_s": 30, "ceiling_s": 600, "jitter": 0.5},
        }
        doc.update(overrides)
        self.cfg = CollectConfig.model_validate(doc)
        self.tmp = tmp
        self.clock = clock
        self.registry = CollectorRegistry()
        self.metrics = CollectMetrics.create(self.registry)
        self.bus = EmbeddedBus(tmp / "bus.sqlite", partitions=2)
        self.bus.ensure_topics([TOPIC])
        self.producer = self.bus.producer()
        self.state = StateStore(tmp / "collector.sqlite")
        self.fetcher = build_fetcher(self.cfg)
        self.collector = self.new_collector()

    def new_collector(self) -> Collector:
        return Collector(
            self.cfg,
            state=self.state,
            fetcher=self.fetcher,
            publisher=Publisher(self.producer, TOPIC),
            matcher=EntityMatcher(WATCHLIST),
            metrics=self.metrics,
            clock=self.clock,
            rng=random.Random(7),
        )

    def published(self) -> list[NewsItem]:
        self._reads = getattr(self, "_reads", 0) + 1
        consumer = self.bus.consumer(f"t-read-{self._reads}", [TOPIC])
        out: list[NewsItem] = []
        while True:
            batch = consumer.poll(1000, timeout=0.2)
            if not batch:
                break
            out += [NewsItem.from_json(m.value) for m in batch]
        consumer.close()
        return out

    def sample(self, name: str, **labels: str) -> float:
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v

    def close(self) -> None:
        self.fetcher.close()
        self.producer.close()
        self.bus.close()
        self.state.close()


@pytest.fixture
def harness(tmp_path: Path, clock: FakeClock) -> Iterator[Harness]:
    h = Harness(tmp_path, clock)
    yield h
    h.close()
