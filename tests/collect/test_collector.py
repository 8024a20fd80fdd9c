"""Hostile feeds through the whole collector; syndication and novelty; seen-set durability."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.collect.config import FeedConfig

from . import feeds
from .conftest import Harness
from .server import FeedServer, endless, static


@pytest.mark.parametrize(
    "body",
    [
        feeds.INVALID_XML,
        feeds.NOT_A_FEED,
        feeds.BILLION_LAUGHS,
        feeds.WIN1252_AS_UTF8,
        feeds.HTML_TITLES,
        b"",
        b"<rss><channel><item><title>" + b"A" * 100_000 + b"</title></item></channel></rss>",
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [1, null, {"title": 5}]}',
    ],
    ids=["invalid", "garbage", "bomb", "cp1252", "html", "empty", "long-title", "bad-jsonfeed"],
)
def test_the_collector_survives_hostile_feeds(
    server: FeedServer, harness: Harness, body: bytes
) -> None:
    url = server.route("/hostile", static(body))
    kind = "jsonfeed" if body.startswith(b"{") else "rss"
    report = harness.collector.poll(FeedConfig(id="h", url=url, kind=kind))  # type: ignore[arg-type]
    assert report.outcome in ("200", "parse_error")
    for item in report.published:
        assert len(item.title) <= harness.cfg.title_max_chars
        assert "<" not in item.title and "lollol" not in item.title


def test_invalid_xml_publishes_the_good_entries_and_counts_the_problem(
    server: FeedServer, harness: Harness
) -> None:
    url = server.route("/broken", static(feeds.INVALID_XML))
    report = harness.collector.poll(FeedConfig(id="b", url=url))
    assert "Corvid Logistics wins $2 billion defence contract" in [
        i.title for i in report.published
    ]
    assert harness.sample("riskwire_feed_parse_problems_total", feed="b") == 1


def test_garbage_is_a_parse_error_with_backoff(server: FeedServer, harness: Harness) -> None:
    url = server.route("/garbage", static(feeds.NOT_A_FEED))
    report = harness.collector.poll(FeedConfig(id="g", url=url))
    assert report.outcome == "parse_error" and report.state.status == "backing-off"
    assert harness.sample("riskwire_feed_fetches_total", feed="g", outcome="parse_error") == 1


def test_xxe_over_http_leaks_nothing(server: FeedServer, harness: Harness, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT-42")
    url = server.route("/xxe", static(feeds.xxe(str(secret))))
    harness.collector.poll(FeedConfig(id="x", url=url))
    for item in harness.published():
        assert "TOP-SECRET" not in item.to_json().decode()


def test_too_large_is_an_outcome_and_the_collector_goes_on(
    server: FeedServer, harness: Harness
) -> None:
    url = server.route("/huge", endless(50 * 1024 * 1024))
    cfg = harness.cfg.model_copy(update={"max_body_mb": 1.0})
    harness.collector.config = cfg
    report = harness.collector.poll(FeedConfig(id="big", url=url))
    assert report.outcome == "too_large" or report.outcome == "200"  # fetcher cap is per client
    ok = harness.collector.poll(FeedConfig(id="ok", url=server.route("/ok", static(feeds.RSS2))))
    assert len(ok.published) == 2


def test_normalised_record(server: FeedServer, harness: Harness) -> None:
    url = server.route("/rss", static(feeds.RSS2))
    harness.collector.poll(FeedConfig(id="wire", url=url, tags=("wire",)))
    items = {i.title: i for i in harness.published()}
    breach = items["Bluefin Payments discloses data breach affecting 2 million customers"]
    assert breach.url == "https://wire.example/a/1"  # utm_* gone
    assert breach.summary == "The payments firm said attackers accessed card data."
    assert breach.published_at.isoformat() == "2026-11-23T14:05:00+00:00"
    assert breach.lang == "en" and breach.tags == ("wire",) and breach.source == "wire"
    (entity,) = breach.entities
    assert (entity.id, entity.matched, entity.relevance, entity.novelty) == (
        "BLFN",
        "Bluefin Payments",
        1.0,
        1.0,
    )
    assert breach.novelty == 1.0


def test_missing_and_future_dates_fall_back_to_fetch_time_and_are_flagged(
    server: FeedServer, harness: Harness
) -> None:
    body = (
        b'<rss version="2.0"><channel><title>t</title>'
        b"<item><title>Undated Quarry Mining item</title><link>https://d.example/1</link></item>"
        b"<item><title>Future Quarry Mining item from 2099</title><link>https://d.example/2</link>"
        b"<pubDate>Thu, 01 Jan 2099 00:00:00 GMT</pubDate></item></channel></rss>"
    )
    url = server.route("/dates", static(body))
    report = harness.collector.poll(FeedConfig(id="d", url=url))
    flags = {i.title: i.flags for i in report.published}
    assert flags == {
        "Undated Quarry Mining item": ("missing_date",),
        "Future Quarry Mining item from 2099": ("future_date",),
    }
    for i in report.published:
        assert i.published_at == i.fetched_at


def test_syndicated_story_is_published_once_and_novelty_drops(
    server: FeedServer, harness: Harness
) -> None:
    copies = [
        ("a", "Bluefin Payments discloses data breach affecting 2 million customers"),
        ("b", "UPDATE 1-Bluefin Payments discloses data breach affecting two million customers"),
        ("c", "Bluefin Payments Discloses Data Breach Affecting 2 Million Customers - Reuters"),
    ]
    reports = []
    for n, (src, title) in enumerate(copies):
        url = server.route(
            f"/{src}", static(feeds.rss([(f"{src}-1", title, f"https://{src}.example/story")]))
        )
        reports.append(harness.collector.poll(FeedConfig(id=f"feed-{src}", url=url)))
        harness.clock.advance(600 * (n + 1))
    published = [i for r in reports for i in r.published]
    assert len(published) == 1 and published[0].source == "feed-a"
    assert published[0].entities[0].novelty == 1.0
    drops = [d for r in reports[1:] for d in r.dropped]
    assert [d.reason for d in drops] == ["near_duplicate", "near_duplicate"]
    assert all(d.duplicate_of == published[0].id for d in drops)
    novelties = [d.novelty for d in drops]
    assert all(n is not None and n < 0.5 for n in novelties)
    # A follow-up on the same entity is news, but less novel than the first story.
    follow = server.route(
        "/f",
        static(
            feeds.rss(
                [
                    (
                        "f-1",
                        "Bluefin Payments breach: regulators open probe into customer data loss",
                        "https://f.example/1",
                    )
                ]
            )
        ),
    )
    r = harness.collector.poll(FeedConfig(id="feed-f", url=follow))
    (item,) = r.published
    assert item.entities[0].id == "BLFN"
    assert item.entities[0].novelty is not None and 0.0 < item.entities[0].novelty < 1.0
    assert harness.sample("riskwire_feed_items_total", feed="feed-b", result="duplicate") == 1
    assert len(harness.published()) == 2


def test_unrelated_stories_of_one_company_are_not_duplicates(
    server: FeedServer, harness: Harness
) -> None:
    items = [
        ("1", "Helios Semiconductor beats Q3 estimates, raises outlook", "https://h.example/1"),
        ("2", "Helios Semiconductor misses Q3 estimates, cuts outlook", "https://h.example/2"),
        ("3", "Helios Semiconductor names new chief financial officer", "https://h.example/3"),
    ]
    url = server.route("/h", static(feeds.rss(items)))
    report = harness.collector.poll(FeedConfig(id="h", url=url))
    assert len(report.published) == 3, report.dropped


def test_same_url_from_two_feeds_is_one_item(server: FeedServer, harness: Harness) -> None:
    one = server.route(
        "/1",
        static(
            feeds.rss(
                [("x", "Atlas Retail to close 40 stores", "https://s.example/a?utm_campaign=z")]
            )
        ),
    )
    two = server.route(
        "/2",
        static(
            feeds.rss([("y", "Atlas Retail closing stores, cutting jobs", "https://S.example/a")])
        ),
    )
    assert len(harness.collector.poll(FeedConfig(id="one", url=one)).published) == 1
    r = harness.collector.poll(FeedConfig(id="two", url=two))
    # The id is the hash of the canonical URL, so this is caught as the same id.
    assert not r.published and r.dropped[0].reason in ("same_id", "same_url")


def test_seen_set_survives_a_new_collector_on_the_same_state(
    server: FeedServer, harness: Harness
) -> None:
    url = server.route("/rss", static(feeds.RSS2))  # no validators: always a 200
    assert len(harness.collector.poll(FeedConfig(id="f", url=url)).published) == 2
    fresh = harness.new_collector()
    assert fresh.load_seen() == 2
    again = fresh.poll(FeedConfig(id="f", url=url))
    assert again.outcome == "200" and not again.published
    assert {d.reason for d in again.dropped} == {"same_id"}


def test_bus_failure_releases_items_and_keeps_validators(
    server: FeedServer, harness: Harness
) -> None:
    from monitor.errors import BusError

    class Broken:
        def publish(self, items: object) -> None:
            raise BusError("bus down")

    url = server.route("/rss", static(feeds.RSS2, etag='"e"'))
    good = harness.collector.publisher
    harness.collector.publisher = Broken()  # type: ignore[assignment]
    r = harness.collector.poll(FeedConfig(id="f", url=url))
    assert r.outcome == "publish_error" and harness.state.feed("f").etag is None
    harness.collector.publisher = good
    r2 = harness.collector.poll(FeedConfig(id="f", url=url))
    assert r2.outcome == "200" and len(r2.published) == 2
    assert harness.state.feed("f").etag == '"e"'


def test_file_and_directory_feeds(tmp_path: Path, harness: Harness) -> None:
    d = tmp_path / "saved"
    d.mkdir()
    (d / "a.xml").write_bytes(feeds.RSS2)
    (d / "b.json").write_bytes(feeds.JSONFEED)
    (d / "notes.txt").write_text("ignored")
    folder = FeedConfig(id="dir", kind="directory", path=d)
    r = harness.collector.poll(folder)
    assert r.outcome == "200" and len(r.published) == 3
    assert harness.collector.poll(folder).outcome == "304"
    (d / "c.atom").write_bytes(feeds.ATOM)
    r3 = harness.collector.poll(folder)
    assert r3.outcome == "200" and [i.source for i in r3.published] == ["dir"]
    single = FeedConfig(id="one", kind="file", path=d / "a.xml")
    assert harness.collector.poll(single).outcome == "200"
    assert harness.collector.poll(single).outcome == "304"
    missing = harness.collector.poll(FeedConfig(id="nope", kind="file", path=d / "zz.xml"))
    assert missing.outcome == "io_error"
