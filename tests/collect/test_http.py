"""HTTP behaviour against a real server on 127.0.0.1: conditional GET, gzip, redirects, timeouts,
backoff and recovery, the size cap. The collector never raises, whatever the server does."""

from __future__ import annotations

import gzip
import tracemalloc

from monitor.collect.config import FeedConfig
from monitor.collect.fetch import HttpFetcher, interval_hint

from . import feeds
from .conftest import Harness
from .server import FeedServer, Switch, endless, redirect, stall, static, status


def feed(url: str, **kw: object) -> FeedConfig:
    return FeedConfig.model_validate({"id": "f", "url": url, **kw})


def test_rss_then_304_costs_no_parse_and_publishes_nothing_twice(
    server: FeedServer, harness: Harness
) -> None:
    url = server.route("/rss", static(feeds.RSS2, etag='"v1"', last_modified="Mon, 23 Nov 2026"))
    first = harness.collector.poll(feed(url))
    assert first.outcome == "200" and len(first.published) == 2
    second = harness.collector.poll(feed(url))
    assert second.outcome == "304" and second.entries == 0 and not second.published
    assert server.headers[-1]["if-none-match"] == '"v1"'
    assert server.headers[-1]["if-modified-since"] == "Mon, 23 Nov 2026"
    assert server.headers[-1]["user-agent"].startswith("Riskwire/")
    assert len(harness.published()) == 2
    assert harness.sample("riskwire_feed_fetches_total", feed="f", outcome="304") == 1
    assert harness.sample("riskwire_feed_items_total", feed="f", result="new") == 2
    assert harness.sample("riskwire_feed_last_success_timestamp_seconds", feed="f") == (
        harness.clock.now
    )


def test_atom_rss1_and_json_feed_over_http(server: FeedServer, harness: Harness) -> None:
    urls = {
        "a": server.route("/atom", static(feeds.ATOM, "application/atom+xml")),
        "r": server.route("/rdf", static(feeds.RSS1, "application/rdf+xml")),
        "j": server.route("/json", static(feeds.JSONFEED, "application/feed+json")),
    }
    kinds = {"a": "atom", "r": "rss", "j": "jsonfeed"}
    got = {
        k: harness.collector.poll(FeedConfig(id=k, url=u, kind=kinds[k]))  # type: ignore[arg-type]
        for k, u in urls.items()
    }
    assert [i.title for i in got["a"].published] == [
        "Pinecrest Pharma shares slump as FDA rejects lead drug"
    ]
    assert got["a"].published[0].url == "https://atom.example/p/7"  # fragment dropped
    assert got["a"].published[0].entities[0].id == "PCRX"
    assert len(got["r"].published) == 1
    assert [i.title for i in got["j"].published] == [
        "Vantage Air cuts full-year guidance on fuel costs"
    ]
    assert [d.reason for d in got["j"].dropped] == ["no_title"]


def test_gzip_body_is_decoded(server: FeedServer, harness: Harness) -> None:
    url = server.route("/gz", static(feeds.RSS2, compress=True))
    report = harness.collector.poll(feed(url))
    assert report.outcome == "200" and len(report.published) == 2
    assert "gzip" in server.headers[-1]["accept-encoding"]


def test_redirect_chain_is_followed_and_a_loop_is_an_error(
    server: FeedServer, harness: Harness
) -> None:
    server.route("/final", static(feeds.RSS2))
    server.route("/r2", redirect(server.url("/final"), 301))
    start = server.route("/r1", redirect("/r2"))
    ok = harness.collector.poll(feed(start))
    assert ok.outcome == "200" and len(ok.published) == 2
    server.route("/loop-a", redirect("/loop-b"))
    server.route("/loop-b", redirect("/loop-a"))
    bad = harness.collector.poll(FeedConfig(id="loop", url=server.url("/loop-a")))
    assert bad.outcome == "redirect_error" and "loop" in (bad.error or "")
    assert bad.state.status == "backing-off"


def test_too_many_redirects(server: FeedServer, harness: Harness) -> None:
    for i in range(10):
        server.route(f"/hop{i}", redirect(f"/hop{i + 1}"))
    report = harness.collector.poll(feed(server.url("/hop0")))
    assert report.outcome == "redirect_error" and "more than 5" in (report.error or "")


def test_stalling_server_times_out_then_backs_off_exponentially(
    server: FeedServer, harness: Harness
) -> None:
    url = server.route("/stall", stall(server.release))
    delays = []
    for _ in range(8):
        r = harness.collector.poll(feed(url))
        assert r.outcome == "timeout"
        delays.append(r.next_delay_s)
        harness.clock.advance(r.next_delay_s)
    # base 30 s, ceiling 600 s, jitter up to half of each delay.
    for n, d in enumerate(delays, start=1):
        full = min(600.0, 30.0 * 2 ** (n - 1))
        assert full * 0.5 <= d <= full
    assert delays[-1] >= 300  # at the ceiling, still retried
    st = harness.state.feed("f")
    assert (st.status, st.failures) == ("backing-off", 8)
    assert st.last_error is not None and st.last_error.startswith("timeout")
    assert harness.sample("riskwire_feed_backoff_state", feed="f") == 1
    assert harness.sample("riskwire_feed_fetches_total", feed="f", outcome="timeout") == 8


def test_500s_back_off_then_recover_when_the_server_heals(
    server: FeedServer, harness: Harness
) -> None:
    switch = Switch(static(feeds.RSS2), status(500))
    url = server.route("/flaky", switch)
    for _ in range(3):
        r = harness.collector.poll(feed(url))
        assert r.outcome == "http_5xx"
        harness.clock.advance(r.next_delay_s)
    assert harness.state.feed("f").failures == 3
    switch.failing_now = False
    healed = harness.collector.poll(feed(url))
    assert healed.outcome == "200" and len(healed.published) == 2
    st = harness.state.feed("f")
    assert (st.status, st.failures, st.last_error) == ("ok", 0, None)
    assert 54 <= healed.next_delay_s <= 1800 * 1.1  # back to the interval (ttl 30 min honoured)
    assert harness.sample("riskwire_feed_backoff_state", feed="f") == 0


def test_404_is_a_4xx_failure(server: FeedServer, harness: Harness) -> None:
    r = harness.collector.poll(feed(server.url("/missing")))
    assert r.outcome == "http_4xx" and r.state.failures == 1


def test_retry_after_and_cache_control_lengthen_never_shorten(
    server: FeedServer, harness: Harness
) -> None:
    url = server.route("/busy", status(503, {"Retry-After": "7200"}))
    r = harness.collector.poll(feed(url))
    assert r.outcome == "http_5xx" and r.next_delay_s == 7200
    slow = server.route(
        "/cached", static(feeds.ATOM, extra={"Cache-Control": "public, max-age=3600"})
    )
    r2 = harness.collector.poll(FeedConfig(id="c", url=slow))
    assert 3600 * 0.9 <= r2.next_delay_s <= 3600 * 1.1
    fast = server.route("/fast", static(feeds.ATOM, extra={"Cache-Control": "max-age=5"}))
    r3 = harness.collector.poll(FeedConfig(id="d", url=fast))
    assert 54 <= r3.next_delay_s <= 66  # the configured 60 s, not 5 s


def test_interval_hint_parsing() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert interval_hint({"retry-after": "120"}, now) == 120
    assert interval_hint({"retry-after": "Tue, 24 Nov 2026 13:00:00 GMT"}, now) == 3600
    assert interval_hint({"expires": "Tue, 24 Nov 2026 12:10:00 GMT"}, now) == 600
    assert interval_hint({"cache-control": "no-cache"}, now) is None


def test_50mb_body_is_aborted_at_the_cap_with_bounded_memory(server: FeedServer) -> None:
    url = server.route("/huge", endless(50 * 1024 * 1024))
    fetcher = HttpFetcher(user_agent="t", max_body_bytes=2 * 1024 * 1024, read_timeout_s=5)
    tracemalloc.start()
    try:
        result = fetcher.fetch(url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        fetcher.close()
    assert result.outcome == "too_large"
    assert peak < 12 * 1024 * 1024, peak


def test_gzip_bomb_is_capped_after_decompression(server: FeedServer) -> None:
    bomb = gzip.compress(b"<" + b" " * (20 * 1024 * 1024))
    url = server.route(
        "/bomb",
        lambda h: _raw(h, bomb, {"Content-Encoding": "gzip", "Content-Type": "text/xml"}),
    )
    fetcher = HttpFetcher(user_agent="t", max_body_bytes=1024 * 1024)
    try:
        assert fetcher.fetch(url).outcome == "too_large"
    finally:
        fetcher.close()


def _raw(h, body: bytes, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    from .server import send

    send(h, 200, body, headers)


def test_declared_content_length_over_the_cap_is_refused_before_reading(
    server: FeedServer,
) -> None:
    url = server.route("/big", static(b"x" * 3000))
    fetcher = HttpFetcher(user_agent="t", max_body_bytes=1000)
    try:
        assert fetcher.fetch(url).outcome == "too_large"
    finally:
        fetcher.close()


def test_connection_refused_is_a_connect_error(harness: Harness) -> None:
    r = harness.collector.poll(feed("http://127.0.0.1:9/feed"))
    assert r.outcome == "connect_error" and r.state.status == "backing-off"


def test_per_host_concurrency_is_bounded(server: FeedServer, harness: Harness) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock = threading.Lock()
    state = {"now": 0, "max": 0}
    gate = threading.Event()

    def slow(h) -> None:  # type: ignore[no-untyped-def]
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            if state["max"] >= 2:
                gate.set()
        # Hold the request a moment so that overlapping polls would show; bounded, not a sleep.
        gate.wait(2)
        server.release.wait(0.2)
        with lock:
            state["now"] -= 1
        static(feeds.ATOM)(h)

    for i in range(6):
        server.route(f"/h{i}", slow)
    polls = [FeedConfig(id=f"h{i}", url=server.url(f"/h{i}")) for i in range(6)]
    assert harness.cfg.per_host_concurrency == 2
    with ThreadPoolExecutor(max_workers=6) as pool:
        reports = list(pool.map(harness.collector.poll, polls))
    assert all(r.outcome == "200" for r in reports)
    assert state["max"] == 2
