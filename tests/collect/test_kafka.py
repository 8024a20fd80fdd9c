"""The collector publishes to a real Kafka broker exactly as to the embedded bus."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.bus.base import Message
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

pytestmark = pytest.mark.kafka


@dataclass
class KafkaCollector:
    collector: Collector
    bus: Any  # KafkaBus, imported lazily (kafka-python loads only for Kafka tests)
    topic: str

    def read(self, n: int, timeout: float = 30.0) -> list[Message]:
        """Up to ``n`` records of the topic, from the beginning, as a new group sees them."""
        consumer = self.bus.consumer(f"t-{uuid.uuid4().hex[:8]}", [self.topic])
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            got += consumer.poll(100, timeout=1)
        consumer.close()
        return got


@contextmanager
def kafka_collector(bootstrap: str, tmp_path: Path, partitions: int) -> Iterator[KafkaCollector]:
    from monitor.bus.kafka import KafkaBus
    from monitor.config import KafkaBusConfig

    topic = f"riskwire.news.raw.{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(KafkaBusConfig(bootstrap=bootstrap), partitions=partitions)
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
        yield KafkaCollector(collector, bus, topic)
    finally:
        fetcher.close()
        state.close()
        producer.close()
        bus.close()


def test_collector_publishes_to_kafka_keyed_by_item_id(
    kafka_bootstrap: str, server: FeedServer, tmp_path: Path
) -> None:
    with kafka_collector(kafka_bootstrap, tmp_path, partitions=2) as kc:
        url = server.route("/rss", static(feeds.RSS2))
        report = kc.collector.poll(FeedConfig(id="k", url=url))
        assert len(report.published) == 2
        got = [(m.key, NewsItem.from_json(m.value)) for m in kc.read(2)]
    assert sorted(i.id for _, i in got) == sorted(i.id for i in report.published)
    assert all(k == i.id.encode() for k, i in got)


def _dated_rss(n: int, when: datetime) -> bytes:
    body = "".join(
        f"<item><title>Acme recall {i}</title><link>https://news.example/old/{i}</link>"
        f"<guid>old-{i}</guid><pubDate>{format_datetime(when + timedelta(minutes=i))}</pubDate>"
        "</item>"
        for i in range(n)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel>{body}</channel></rss>'.encode()


def test_month_old_entries_outlive_the_brokers_retention_check(
    kafka_bootstrap: str, server: FeedServer, tmp_path: Path
) -> None:
    """A first poll that backfills old entries: the broker must not delete them as expired.

    The test broker checks retention every second (deploy/kafka/server.properties) with the
    default 7-day retention.ms; records stamped with a 30-day-old event time were deleted there
    before a consumer could read them. They are stamped with the fetch time, and the event time
    stays in the record.
    """
    month_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    with kafka_collector(kafka_bootstrap, tmp_path, partitions=1) as kc:
        url = server.route("/old", static(_dated_rss(5, month_ago)))
        report = kc.collector.poll(FeedConfig(id="old", url=url))
        assert len(report.published) == 5
        assert all(i.published_at < month_ago + timedelta(hours=1) for i in report.published)
        time.sleep(3)  # three retention checks
        got = [NewsItem.from_json(m.value) for m in kc.read(5)]
    assert sorted(i.id for i in got) == sorted(i.id for i in report.published)
    assert {i.published_at for i in got} == {i.published_at for i in report.published}
