"""FeedScheduler bookkeeping: sync diffs and backoff kept across restarts (no waiting)."""

from __future__ import annotations

import random

from monitor.collect.config import FeedConfig
from monitor.collect.scheduler import FeedScheduler
from monitor.collect.state import FeedState

from .conftest import Harness


def test_sync_adds_changes_and_removes_jobs(harness: Harness) -> None:
    sched = FeedScheduler(harness.collector, concurrency=2, rng=random.Random(1))
    sched._scheduler.start(paused=True)  # jobs are scheduled but never run
    try:
        a = FeedConfig(id="a", url="https://a.example/rss")
        b = FeedConfig(id="b", url="https://b.example/rss")
        assert sched.sync([a, b]) == {"added": ["a", "b"], "changed": [], "removed": []}
        a2 = a.model_copy(update={"interval_s": 900.0})
        c = FeedConfig(id="c", url="https://c.example/rss")
        assert sched.sync([a2, c]) == {"added": ["c"], "changed": ["a"], "removed": ["b"]}
        assert sorted(j.id for j in sched._scheduler.get_jobs()) == ["a", "c"]
        job = sched._scheduler.get_job("a")
        assert job is not None and job.max_instances == 1 and job.coalesce
        assert sched.sync([a2, c]) == {"added": [], "changed": [], "removed": []}
        assert harness.sample("riskwire_collect_feeds") == 2
    finally:
        sched.shutdown(wait=False)


def test_first_run_keeps_a_stored_backoff_and_spreads_the_rest(harness: Harness) -> None:
    now = harness.clock.now
    feed = FeedConfig(id="slow", url="https://s.example/rss", interval_s=60)
    harness.state.save_feed(
        FeedState(
            "slow", location=feed.location, status="backing-off", failures=5, next_due=now + 1200
        )
    )
    sched = FeedScheduler(harness.collector, concurrency=1, first_run_spread_s=5)
    assert sched._first_delay(feed) == 1200
    fresh = FeedConfig(id="fresh", url="https://f.example/rss", interval_s=60)
    assert 0 <= sched._first_delay(fresh) <= 5
    moved = feed.model_copy(update={"url": "https://elsewhere.example/rss"})
    assert sched._first_delay(moved) <= 5  # a moved feed starts afresh
