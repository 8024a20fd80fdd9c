from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.collect.normalize import canonical_url, event_time, plain_text, stable_id


def test_canonical_url_drops_tracking_fragment_default_port_and_sorts() -> None:
    url = "HTTPS://Wire.Example:443/a/1?utm_source=rss&b=2&fbclid=x&a=1#top"
    assert canonical_url(url) == "https://wire.example/a/1?a=1&b=2"
    assert canonical_url("http://h.example:8080") == "http://h.example:8080/"
    assert canonical_url("urn:uuid:1") == "urn:uuid:1"


def test_plain_text_strips_html_decodes_entities_collapses_and_caps() -> None:
    assert plain_text("<p>A&nbsp;&amp;&#160;B</p>\n\n  <br/>C", 100) == "A & B C"
    assert plain_text("<script>x()</script><style>p{}</style>ok", 100) == "ok"
    assert plain_text("&lt;b&gt;bold&lt;/b&gt; move", 100) == "bold move"
    long = "word " * 100
    capped = plain_text(long, 50)
    assert len(capped) <= 50 and capped.endswith("…")
    assert plain_text("a\x00b\x07c", 10) == "abc"


def test_event_time_flags_missing_and_future_dates() -> None:
    fetched = datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert event_time(None, fetched, 600) == (fetched, ("missing_date",))
    future = fetched + timedelta(days=2)
    assert event_time(future, fetched, 600) == (fetched, ("future_date",))
    near = fetched + timedelta(minutes=5)
    assert event_time(near, fetched, 600) == (near, ())


def test_stable_id_prefers_url_then_guid_then_title() -> None:
    a = stable_id("https://x.example/1", "g", "feed", "T")
    assert a == stable_id("https://x.example/1", "other-guid", "other-feed", "T2")
    assert stable_id(None, "g", "feed", "T") != stable_id(None, "g", "feed2", "T")
    assert stable_id(None, None, "feed", "T") == stable_id(None, None, "feed", "T")
