"""Feed scheduling on APScheduler: one job per feed, rescheduled after every poll.

- ``max_instances=1``: one feed is never polled twice at once; ``coalesce=True``: a feed that
  missed several runs (laptop asleep, long backoff) runs once, not once per missed run.
- The executor's pool bounds fetches in flight overall; the collector bounds them per host.
- The delay to a feed's next run comes from the collector (interval with jitter, lengthened by
  TTL/Cache-Control/Expires hints, or the backoff after a failure), so the policy is testable
  with an injected clock and no scheduler at all.
- ``sync(feeds)`` adds, changes and removes jobs in place (SIGHUP).
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.collect.collector import Collector, PollReport
from monitor.collect.config import FeedConfig
from monitor.logs import get_logger

log = get_logger("collect.scheduler")


class FeedScheduler:
    def __init__(
        self,
        collector: Collector,
        *,
        concurrency: int,
        first_run_spread_s: float = 5.0,
        on_report: Callable[[PollReport], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.collector = collector
        self.first_run_spread_s = first_run_spread_s
        self._on_report = on_report
        self._rng = rng or random.Random()
        self._feeds: dict[str, FeedConfig] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=concurrency)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self.polls = 0

    @property
    def feeds(self) -> dict[str, FeedConfig]:
        with self._lock:
            return dict(self._feeds)

    def start(self, feeds: Iterable[FeedConfig]) -> None:
        self._scheduler.start()
        self.sync(feeds)

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with ``wait``, polls in flight finish (each flushes its own batch)."""
        self._stopping.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    def _first_delay(self, feed: FeedConfig) -> float:
        st = self.collector.state.feed(feed.id)
        now = self.collector.clock()
        if st.next_due is not None and st.next_due > now and st.location == feed.location:
            # Keep a backoff (or a long TTL) across restarts instead of hammering at start.
            return st.next_due - now
        # Spread the first pass so that a registry of many feeds does not start in one burst.
        interval = feed.interval_s or self.collector.config.interval_s
        return self._rng.random() * min(self.first_run_spread_s, interval)

    def sync(self, feeds: Iterable[FeedConfig]) -> dict[str, list[str]]:
        """Make the jobs match ``feeds``; returns the ids added, changed and removed."""
        wanted = {f.id: f for f in feeds}
        changes: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
        with self._lock:
            for feed_id in list(self._feeds):
                if feed_id not in wanted:
                    del self._feeds[feed_id]
                    with contextlib.suppress(JobLookupError):
                        self._scheduler.remove_job(feed_id)
                    if self.collector.metrics is not None:
                        self.collector.metrics.forget(feed_id)
                    changes["removed"].append(feed_id)
            for feed_id, feed in wanted.items():
                old = self._feeds.get(feed_id)
                if old == feed:
                    continue
                self._feeds[feed_id] = feed
                delay = self._first_delay(feed) if old is None else 0.0
                when = datetime.now(UTC) + timedelta(seconds=delay)
                interval = feed.interval_s or self.collector.config.interval_s
                if old is None:
                    self._scheduler.add_job(
                        self._run,
                        IntervalTrigger(seconds=interval, timezone=UTC),
                        args=(feed_id,),
                        id=feed_id,
                        name=f"feed {feed_id}",
                        next_run_time=when,
                        replace_existing=True,
                    )
                    changes["added"].append(feed_id)
                else:
                    self._scheduler.reschedule_job(
                        feed_id, trigger=IntervalTrigger(seconds=interval, timezone=UTC)
                    )
                    self._scheduler.modify_job(feed_id, next_run_time=when)
                    changes["changed"].append(feed_id)
        if self.collector.metrics is not None:
            self.collector.metrics.feeds_configured.set(len(wanted))
        if any(changes.values()):
            log.info("feed registry synced", extra={k: v for k, v in changes.items() if v})
        return changes

    def _run(self, feed_id: str) -> None:
        if self._stopping.is_set():
            return
        with self._lock:
            feed = self._feeds.get(feed_id)
        if feed is None:
            return
        try:
            report = self.collector.poll(feed)
            delay = report.next_delay_s
        except Exception:
            # A bug, not a feed problem: keep the feed scheduled and say so loudly.
            log.exception("feed poll crashed", extra={"feed": feed_id})
            report = None
            delay = self.collector.failure_delay(1, None)
        self.polls += 1
        if report is not None and self._on_report is not None:
            self._on_report(report)
        if self._stopping.is_set():
            return
        with self._lock:
            if feed_id not in self._feeds:
                return
            with contextlib.suppress(JobLookupError):
                self._scheduler.modify_job(
                    feed_id, next_run_time=datetime.now(UTC) + timedelta(seconds=delay)
                )
