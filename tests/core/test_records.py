"""Records: round trips, schema checks and clear errors for malformed input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.errors import RecordError
from monitor.records import (
    Alert,
    EntityMatch,
    ModelInfo,
    NewsItem,
    ScoredItem,
    Sentiment,
    Timings,
    decode_any,
    item_id_for,
)

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def news(**kw: object) -> NewsItem:
    fields: dict[str, object] = dict(
        id=item_id_for("https://example.test/a"),
        source="wire",
        url="https://example.test/a",
        title="Acme cuts guidance",
        published_at=NOW,
        fetched_at=NOW,
        entities=(EntityMatch(id="ACME", name="Acme Corp", matched="Acme", relevance=0.9),),
    )
    fields.update(kw)
    return NewsItem(**fields)  # type: ignore[arg-type]


def test_news_round_trip_and_schema_field() -> None:
    item = news()
    data = item.to_json()
    assert b'"schema":"riskwire.news/1"' in data
    assert NewsItem.from_json(data) == item
    assert item.key == item.id
    assert item.primary_entity == "ACME"


def test_scored_is_keyed_by_primary_entity() -> None:
    scored = ScoredItem.from_news(
        news(),
        sentiment=Sentiment(
            label="negative",
            probs={"negative": 0.8, "neutral": 0.1, "positive": 0.1},
            polarity=-0.7,
        ),
        risk=(),
        model=ModelInfo(name="m", version="1", sha256="0" * 64),
        timings=Timings(fetched_to_scored_ms=12.0, inference_ms=3.0),
    )
    assert scored.key == "ACME"
    back = decode_any(scored.to_json())
    assert isinstance(back, ScoredItem)
    assert back.sentiment.label == "negative"


def test_records_are_immutable() -> None:
    item = news()
    with pytest.raises(ValueError, match="frozen"):
        item.title = "changed"  # type: ignore[misc]


def test_wrong_schema_is_refused_with_both_names() -> None:
    with pytest.raises(RecordError, match="riskwire.news/1.*riskwire.alert/1"):
        Alert.from_json(news().to_json())


def test_future_major_version_is_refused() -> None:
    data = news().to_json().replace(b"riskwire.news/1", b"riskwire.news/2")
    with pytest.raises(RecordError, match="incompatible major version"):
        NewsItem.from_json(data)


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"id": "x"}', "missing or malformed 'schema'"),
        (
            b'{"schema": "riskwire.news/1", "id": "x", "source": "s", "url": "u", "title": "t",'
            b' "published_at": "2026-12-01T09:30:00", "fetched_at": "2026-12-01T09:30:00Z"}',
            "published_at",
        ),
    ],
    ids=["binary", "array", "no-schema", "naive-time"],
)
def test_malformed_input_raises_record_error(data: bytes, expect: str) -> None:
    with pytest.raises(RecordError, match=expect):
        NewsItem.from_json(data)


def test_unknown_extra_fields_are_tolerated_within_a_major_version() -> None:
    data = news().to_json().replace(b'"schema"', b'"added_later":1,"schema"')
    assert NewsItem.from_json(data).title == "Acme cuts guidance"


def test_item_id_is_stable() -> None:
    assert item_id_for("https://example.test/a") == item_id_for("https://example.test/a")
    assert item_id_for("https://example.test/a") != item_id_for("https://example.test/b")
