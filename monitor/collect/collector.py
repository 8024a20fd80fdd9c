"""One poll of one feed, start to end: fetch -> parse -> normalise -> tag -> dedup -> publish ->
remember. Scheduling lives in scheduler.py; this module knows nothing of time but its clock.

Order of effects in a successful poll (the delivery guarantee is enforced here):
1. publish the new items and flush the bus,
2. then, in one SQLite transaction, add them to the seen-set and store the feed's new
   validators (ETag, Last-Modified).
A crash before 2 re-fetches the same body next time and re-publishes it (harmless: item ids);
it can never mark an item seen that is not on the bus.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from monitor.collect.backoff import Backoff
from monitor.collect.config import CollectConfig, FeedConfig
from monitor.collect.dedup import Candidate, Deduper
from monitor.collect.entities import EntityMatcher, Watchlist
from monitor.collect.fetch import FetchResult, HttpFetcher, fetch_file, list_directory
from monitor.collect.metrics import CollectMetrics
from monitor.collect.normalize import canonical_url, event_time, plain_text, stable_id
from monitor.collect.parse import ParsedFeed, RawEntry, parse_body
from monitor.collect.publish import Publisher
from monitor.collect.state import FeedState, SeenRow, StateStore
from monitor.errors import BusError
from monitor.logs import get_logger
from monitor.records import EntityMatch, NewsItem

log = get_logger("collect")
Clock = Callable[[], float]


@dataclass(frozen=True)
class Drop:
    """An entry that was not published, and why."""

    title: str
    url: str | None
    reason: str  # same_id | same_url | near_duplicate | no_title | invalid
    duplicate_of: str | None = None
    similarity: float | None = None
    novelty: float | None = None


@dataclass
class PollReport:
    feed_id: str
    outcome: str
    state: FeedState
    next_delay_s: float
    published: list[NewsItem] = field(default_factory=list)
    dropped: list[Drop] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    entries: int = 0


class Collector:
    """Polls feeds. Thread-safe: ``poll`` may run for several feeds at once (never one feed
    twice at once: the scheduler guarantees that)."""

    def __init__(
        self,
        config: CollectConfig,
        *,
        state: StateStore,
        fetcher: HttpFetcher,
        publisher: Publisher | None,
        matcher: EntityMatcher | None = None,
        deduper: Deduper | None = None,
        metrics: CollectMetrics | None = None,
        items_total: Callable[[int], None] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.fetcher = fetcher
        self.publisher = publisher
        self.matcher = matcher or EntityMatcher(Watchlist())
        self.deduper = deduper or Deduper(
            window_s=config.dedup.window_hours * 3600.0,
            near_dup_jaccard=config.dedup.near_dup_jaccard,
            novelty_window_s=config.dedup.novelty_window_hours * 3600.0,
            retention_s=config.dedup.seen_retention_days * 86400.0,
        )
        self.metrics = metrics
        self._items_total = items_total
        self.clock: Clock = clock or time.time
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self.backoff = Backoff(
            base_s=config.backoff.base_s,
            ceiling_s=config.backoff.ceiling_s,
            jitter=config.backoff.jitter,
        )
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._hosts_lock = threading.Lock()

    def load_seen(self) -> int:
        return self.deduper.load(self.state, self.clock())

    # --- timing --------------------------------------------------------------------------

    def _random(self) -> float:
        with self._rng_lock:
            return self._rng.random()

    def interval_for(self, feed: FeedConfig, hints: tuple[float | None, ...] = ()) -> float:
        """The feed's interval, lengthened (never shortened) by what the feed asked for, with
        jitter so that feeds of one host drift apart."""
        base = feed.interval_s or self.config.interval_s
        asked = [h for h in hints if h is not None and h > base]
        if asked:
            base = min(max(asked), max(self.config.max_interval_s, base))
        spread = self.config.interval_jitter
        return base * (1.0 + spread * (2.0 * self._random() - 1.0))

    def failure_delay(self, failures: int, hint_s: float | None) -> float:
        delay = self.backoff.delay(failures, self._random())
        if hint_s is not None and hint_s > delay:
            # Retry-After on a 429/503: wait as long as asked, within our own cap.
            delay = min(hint_s, max(self.config.max_interval_s, self.config.backoff.ceiling_s))
        return delay

    # --- fetching ------------------------------------------------------------------------

    def _host_slot(self, url: str) -> threading.BoundedSemaphore:
        host = (urlsplit(url).hostname or "").lower()
        with self._hosts_lock:
            sem = self._hosts.get(host)
            if sem is None:
                sem = threading.BoundedSemaphore(self.config.per_host_concurrency)
                self._hosts[host] = sem
            return sem

    def _fetch(
        self, feed: FeedConfig, st: FeedState
    ) -> tuple[FetchResult, list[tuple[str, FetchResult]]]:
        """The combined result, plus (file name, result) per file for directory feeds."""
        cap = self.config.max_body_bytes
        if feed.kind == "file":
            assert feed.path is not None
            r = fetch_file(feed.path, max_body_bytes=cap, last_modified=st.last_modified)
            return r, [("", r)]
        if feed.kind == "directory":
            assert feed.path is not None
            if not feed.path.is_dir():
                r = FetchResult("io_error", str(feed.path), error=f"{feed.path}: not a directory")
                return r, []
            tokens = st.file_tokens()
            named = [
                (p.name, fetch_file(p, max_body_bytes=cap, last_modified=tokens.get(p.name)))
                for p in list_directory(feed.path)
            ]
            parts = [r for _, r in named]
            changed = [p for p in parts if p.outcome == "200"]
            bad = [p for p in parts if not p.ok]
            if changed:
                outcome = "200"
            elif parts and len(bad) == len(parts):
                outcome = bad[0].outcome
            else:
                outcome = "304"
            merged = FetchResult(
                outcome,
                feed.path.resolve().as_uri(),
                status=200,
                error="; ".join(p.error for p in bad if p.error) or None,
                elapsed_s=sum(p.elapsed_s for p in parts),
            )
            return merged, named
        assert feed.url is not None
        headers = {k: v.get_secret_value() for k, v in feed.headers.items()}
        with self._host_slot(feed.url):
            r = self.fetcher.fetch(
                feed.url, etag=st.etag, last_modified=st.last_modified, headers=headers
            )
        return r, [("", r)]

    # --- the poll ------------------------------------------------------------------------

    def poll(self, feed: FeedConfig, *, dry_run: bool = False) -> PollReport:
        """Poll ``feed`` once. Never raises for anything a feed or the network can do.

        ``dry_run``: parse, tag and judge, but publish nothing and change no state (for
        ``riskwire feeds check``).
        """
        now = self.clock()
        st = self.state.feed(feed.id)
        if st.location and st.location != feed.location:
            # The feed moved (reload): the old URL's validators mean nothing to the new one.
            st = st.evolve(etag=None, last_modified=None)
        st = st.evolve(location=feed.location, last_attempt=now)
        fetched, parts = self._fetch(feed, st)
        m = self.metrics
        if m is not None:
            if fetched.outcome != "200":  # a 200 is counted once we know it parsed
                m.fetches.labels(feed.id, fetched.outcome).inc()
            m.fetch_seconds.labels(feed.id).observe(fetched.elapsed_s)
        if not fetched.ok:
            return self._failed(feed, st, fetched.outcome, fetched.error, fetched.hint_s, dry_run)
        if fetched.outcome == "304":
            return self._succeeded(feed, st, fetched, parts, [], now, dry_run, "304")
        parsed_all: list[ParsedFeed] = []
        for _, part in parts:
            if part.outcome != "200" or part.body is None:
                continue
            try:
                parsed = parse_body(
                    part.body, kind=feed.kind, content_type=part.content_type, mapping=feed.mapping
                )
            except Exception as exc:  # a parser bug must cost one feed one poll, nothing more
                log.exception("parser raised", extra={"feed": feed.id})
                parsed = ParsedFeed(failed=True, problems=[f"parser raised {exc!r}"])
            parsed_all.append(parsed)
        if parsed_all and all(p.failed for p in parsed_all):
            why = "; ".join(pr for p in parsed_all for pr in p.problems) or "no feed found"
            if m is not None:
                m.fetches.labels(feed.id, "parse_error").inc()
            return self._failed(feed, st, "parse_error", why, None, dry_run)
        if m is not None:
            m.fetches.labels(feed.id, "200").inc()
        return self._succeeded(feed, st, fetched, parts, parsed_all, now, dry_run, "200")

    def _failed(
        self,
        feed: FeedConfig,
        st: FeedState,
        outcome: str,
        error: str | None,
        hint_s: float | None,
        dry_run: bool,
    ) -> PollReport:
        failures = st.failures + 1
        delay = self.failure_delay(failures, hint_s)
        now = self.clock()
        new = st.evolve(
            status="backing-off",
            failures=failures,
            last_error=f"{outcome}: {error}" if error else outcome,
            last_outcome=outcome,
            next_due=now + delay,
        )
        if not dry_run:
            self.state.save_feed(new)
            if self.metrics is not None:
                self.metrics.backoff_state.labels(feed.id).set(1)
                self.metrics.consecutive_failures.labels(feed.id).set(failures)
        # Log a failure when it starts or changes, not on every retry at the ceiling.
        if st.failures == 0 or st.last_outcome != outcome:
            log.warning(
                "feed fetch failed",
                extra={
                    "feed": feed.id,
                    "outcome": outcome,
                    "error": error,
                    "failures": failures,
                    "retry_in_s": round(delay, 1),
                },
            )
        return PollReport(feed.id, outcome, new, delay, error=error)

    def _succeeded(
        self,
        feed: FeedConfig,
        st: FeedState,
        fetched: FetchResult,
        parts: list[tuple[str, FetchResult]],
        parsed_all: list[ParsedFeed],
        now: float,
        dry_run: bool,
        outcome: str,
    ) -> PollReport:
        ttl = max((p.ttl_s for p in parsed_all if p.ttl_s), default=None)
        delay = self.interval_for(feed, (ttl, fetched.hint_s))
        if feed.kind == "directory":
            tokens = st.file_tokens()
            for name, part in parts:
                if part.ok and part.last_modified:
                    tokens[name] = part.last_modified
            validators: dict[str, str | None] = {
                "etag": None,
                "last_modified": json.dumps(tokens, sort_keys=True),
            }
        else:
            validators = {"etag": fetched.etag, "last_modified": fetched.last_modified}
        new_state = st.evolve(
            status="ok",
            failures=0,
            last_error=None,
            last_outcome=outcome,
            last_success=now,
            next_due=now + delay,
            **validators,
        )
        report = PollReport(feed.id, outcome, new_state, delay)
        for p in parsed_all:
            report.problems.extend(p.problems)
        if report.problems and not dry_run:
            if self.metrics is not None:
                self.metrics.parse_problems.labels(feed.id).inc()
            log.warning(
                "feed parsed with problems", extra={"feed": feed.id, "problems": report.problems}
            )
        fetched_at = datetime.fromtimestamp(now, UTC)
        entries: list[tuple[RawEntry, str | None]] = []
        for p in parsed_all:
            for e in p.entries[: self.config.max_entries_per_feed]:
                entries.append((e, p.lang))
        report.entries = len(entries)
        # Feeds list newest first; publish oldest first so the topic reads in event order.
        entries.reverse()
        new_ids: list[str] = []
        rows: list[SeenRow] = []
        for entry, lang in entries:
            item, drop, row = self._judge(feed, entry, lang, fetched_at, now, dry_run)
            if drop is not None:
                report.dropped.append(drop)
            if item is not None and row is not None:
                report.published.append(item)
                rows.append(row)
                new_ids.append(item.id)
        if dry_run:
            self.deduper.release(new_ids)
            return report
        try:
            if self.publisher is not None:
                self.publisher.publish(report.published)
        except BusError as exc:
            self.deduper.release(new_ids)
            if self.metrics is not None:
                self.metrics.publish_errors.inc()
            log.error(
                "publish failed; the feed is fetched again without validators next time",
                extra={"feed": feed.id, "items": len(new_ids), "error": str(exc)},
            )
            failed = self._failed(feed, st, outcome, f"bus: {exc}", None, dry_run)
            failed.outcome = "publish_error"
            return failed
        # The items are on the bus now: remember them in memory whatever the state file does.
        self.deduper.commit(new_ids)
        try:
            self.state.add_seen(rows, new_state)
        except sqlite3.Error as exc:
            # Not fatal: after a restart these items may be published once more (at least once).
            log.error(
                "cannot write the seen-set; items may be re-published after a restart",
                extra={"feed": feed.id, "items": len(rows), "error": str(exc)},
            )
        self._count(feed, report)
        return report

    def _count(self, feed: FeedConfig, report: PollReport) -> None:
        m = self.metrics
        if m is not None:
            m.backoff_state.labels(feed.id).set(0)
            m.consecutive_failures.labels(feed.id).set(0)
            if report.state.last_success is not None:
                m.last_success.labels(feed.id).set(report.state.last_success)
            if report.published:
                m.items.labels(feed.id, "new").inc(len(report.published))
            dups = sum(1 for d in report.dropped if d.reason in _DUP_REASONS)
            if dups:
                m.items.labels(feed.id, "duplicate").inc(dups)
            invalid = len(report.dropped) - dups
            if invalid:
                m.items.labels(feed.id, "invalid").inc(invalid)
            for d in report.dropped:
                m.drops.labels(feed.id, d.reason).inc()
        if self._items_total is not None and report.published:
            self._items_total(len(report.published))
        for item in report.published:
            log.debug("published", extra={"feed": feed.id, "item_id": item.id})
        if report.published or report.dropped:
            log.info(
                "feed polled",
                extra={
                    "feed": feed.id,
                    "outcome": report.outcome,
                    "entries": report.entries,
                    "published": len(report.published),
                    "dropped": len(report.dropped),
                },
            )

    def _judge(
        self,
        feed: FeedConfig,
        entry: RawEntry,
        lang: str | None,
        fetched_at: datetime,
        now: float,
        dry_run: bool,
    ) -> tuple[NewsItem | None, Drop | None, SeenRow | None]:
        cfg = self.config
        title = plain_text(entry.title, cfg.title_max_chars)
        link = entry.link.strip() if entry.link else None
        url = canonical_url(link) if link else None
        if not title:
            return None, Drop("", url, "no_title"), None
        summary = plain_text(entry.summary, cfg.summary_max_chars)
        published, flags = event_time(entry.published, fetched_at, cfg.future_tolerance_s)
        item_id = stable_id(url, entry.guid, feed.id, title)
        matches = self.matcher.match(title, summary, feed.entity_hints)
        candidate = Candidate(
            id=item_id,
            url=url,
            source=feed.id,
            title=title,
            entities=tuple(mt.id for mt in matches),
            event_ts=published.timestamp(),
        )
        verdict = self.deduper.check(candidate, now)
        if not verdict.new:
            return (
                None,
                Drop(
                    title,
                    url,
                    verdict.reason or "duplicate",
                    verdict.duplicate_of,
                    verdict.similarity,
                    verdict.item_novelty,
                ),
                None,
            )
        entities = tuple(
            EntityMatch(
                id=mt.id,
                name=mt.name,
                matched=mt.matched,
                relevance=mt.relevance,
                novelty=verdict.novelty.get(mt.id),
            )
            for mt in matches
        )
        item = NewsItem(
            id=item_id,
            source=feed.id,
            url=url or link or "",
            title=title,
            summary=summary,
            published_at=published,
            fetched_at=fetched_at,
            lang=(lang or feed.lang or "en").split("-")[0].lower()[:8] or "en",
            entities=entities,
            tags=feed.tags,
            flags=flags,
            novelty=verdict.item_novelty,
        )
        row = SeenRow(
            id=item_id,
            url=url,
            source=feed.id,
            title=title,
            words=verdict.words,
            entities=candidate.entities,
            event_ts=candidate.event_ts,
            seen_ts=now,
        )
        return item, None, row


_DUP_REASONS = frozenset({"same_id", "same_url", "near_duplicate"})
