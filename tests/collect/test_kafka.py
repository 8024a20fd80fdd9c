"""The collector publishes to a real Kafka broker exactly as to the embedded bus."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
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


def _dated_rss(n: int, when: datetime) -> bytes:
    body = "".join(
        f"<item><title>Acme recall {i}</title><link>https://news.example/old/{i}</link>"
        f"<guid>old-{i}</guid><pubDate>{format_datetime(when + timedelta(minutes=i))}</pubDate>"
        "</item>"
        for i in range(n)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel>{body}</channel></rss>'.encode()


@pytest.mark.kafka
def test_month_old_entries_outlive_the_brokers_retention_check(
    kafka_bootstrap: str, server: FeedServer, tmp_path: Path
) -> None:
    """A first poll that backfills old entries: the broker must not delete them as expired.

    The test broker checks retention every second (deploy/kafka/server.properties) with the
    default 7-day retention.ms; records stamped with a 30-day-old event time were deleted there
    before a consumer could read them. They are stamped with the fetch time, and the event time
    stays in the record.
    """
    from monitor.bus.kafka import KafkaBus
    from monitor.config import KafkaBusConfig

    topic = f"riskwire.news.raw.{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(KafkaBusConfig(bootstrap=kafka_bootstrap), partitions=1)
    producer = bus.producer()
    state = StateStore(tmp_path / "collector.sqlite")
    cfg = CollectConfig()
    fetcher = build_fetcher(cfg)
    month_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    try:
        collector = Collector(
            cfg,
            state=state,
            fetcher=fetcher,
            publisher=Publisher(producer, topic),
            matcher=EntityMatcher(WATCHLIST),
            rng=random.Random(1),
        )
        url = server.route("/old", static(_dated_rss(5, month_ago)))
        report = collector.poll(FeedConfig(id="old", url=url))
        assert len(report.published) == 5
        assert all(i.published_at < month_ago + timedelta(hours=1) for i in report.published)
        time.sleep(3)  # three retention checks
        consumer = bus.consumer(f"t-{uuid.uuid4().hex[:8]}", [topic])
        got: list[NewsItem] = []
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            got += [NewsItem.from_json(m.value) for m in consumer.poll(100, timeout=1)]
        consumer.close()
        assert sorted(i.id for i in got) == sorted(i.id for i in report.published)
        assert {i.published_at for i in got} == {i.published_at for i in report.published}
    finally:
        fetcher.close()
        state.close()
        producer.close()
        bus.close()
