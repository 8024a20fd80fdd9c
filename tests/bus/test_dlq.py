"""Poison messages: each lands in <topic>.dlq with its error and the consumer goes on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter

from monitor.bus.base import checkpoint, dlq_topic
from monitor.bus.dlq import decode_or_dead_letter
from monitor.records import NewsItem

from .conftest import BusFactory, consume_until


def _news(i: int) -> NewsItem:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return NewsItem(
        id=f"item-{i}",
        source="wire",
        url=f"https://example.com/{i}",
        title=f"Title {i}",
        published_at=now,
        fetched_at=now,
    )


def test_poison_messages_go_to_the_dlq_and_the_consumer_goes_on(bus_factory: BusFactory) -> None:
    bus = bus_factory()
    topic = bus_factory.name("news")
    dlq = dlq_topic(topic)
    bus.ensure_topics([topic, dlq], partitions=1)
    prod = bus_factory.track(bus.producer())
    wrong_schema = json.dumps({"schema": "riskwire.news/1", "id": "x", "title": 7}).encode()
    payloads = [_news(1).to_json(), b"{not json at all", wrong_schema, _news(2).to_json()]
    for p in payloads:
        prod.produce(topic, "same-key", p)
    prod.flush()

    registry = CollectorRegistry()
    dead = Counter("riskwire_dead_letters", "poison", ["topic", "stage"], registry=registry)
    cons = bus_factory.track(bus.consumer(bus_factory.name("g"), [topic]))
    msgs = consume_until(cons, lambda got: len(got) >= 4)
    decoded = [decode_or_dead_letter(m, NewsItem.from_json, prod, "test", dead) for m in msgs]
    checkpoint(prod, cons)
    assert [d.id if d else None for d in decoded] == ["item-1", None, None, "item-2"]
    assert (
        registry.get_sample_value("riskwire_dead_letters_total", {"topic": topic, "stage": "test"})
        == 2
    )

    reader = bus_factory.track(bus.consumer(bus_factory.name("dlq"), [dlq]))
    letters = [json.loads(m.value) for m in consume_until(reader, lambda got: len(got) >= 2)]
    assert [letter["offset"] for letter in letters] == [msgs[1].offset, msgs[2].offset]
    not_json, bad_fields = letters
    assert "not JSON" in not_json["error"]
    assert not_json["value"] == "{not json at all"
    assert not_json["topic"] == topic and not_json["stage"] == "test"
    assert "source" in bad_fields["error"] and "title" in bad_fields["error"]
    assert json.loads(bad_fields["value"])["title"] == 7
    assert cons.committed(msgs[-1].tp) == msgs[-1].offset + 1, "the consumer went on"
