"""The collector publishes to a real Kafka broker exactly as to the embedded bus."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest

from monitor.collect.collector import Collector
from monitor.collect.config import CollectConfig, FeedConfig
from monitor.collect.entities import EntityMatcher
from monitor.collect.publish import Publisher
from monitor.collect.role import build_fetcher
from monitor.collect.state import StateStore
from monitor.records import NewsItem

from . import feeds
from .conftest import WATCHLIST
from .server import FeedServer, static


@pytest.mark.kafka
def test_collector_publishes_to_kafka_keyed_by_item_id(
    kafka_bootstrap: str, server: FeedServer, tmp_path: Path
) -> None:
    from monitor.bus.kafka import KafkaBus
    from monitor.config import KafkaBusConfig

    topic = f"riskwire.news.raw.{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(KafkaBusConfig(bootstrap=kafka_bootstrap), partitions=2)
    bus.ensure_topics([topic])
    producer = bus.producer()
    cfg = CollectConfig()
    state = StateStore(tmp_path / "collector.sqlite")
    fetcher = build_fetcher(cfg)
    try:
        collector = Collector(
            cfg,
            state=state,
            fetcher=fetcher,
            publisher=Publisher(producer, topic),
            matcher=EntityMatcher(WATCHLIST),
            rng=random.Random(1),
        )
        url = server.route("/rss", static(feeds.RSS2))
        report = collector.poll(FeedConfig(id="k", url=url))
        assert len(report.published) == 2
        consumer = bus.consumer(f"t-{uuid.uuid4().hex[:8]}", [topic])
        got: list[tuple[bytes | None, NewsItem]] = []
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            got += [(m.key, NewsItem.from_json(m.value)) for m in consumer.poll(100, timeout=1)]
        consumer.close()
        assert sorted(i.id for _, i in got) == sorted(i.id for i in report.published)
        assert all(k == i.id.encode() for k, i in got)
    finally:
        fetcher.close()
        state.close()
        producer.close()
        bus.close()
