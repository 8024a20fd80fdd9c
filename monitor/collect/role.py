"""The collector role: schedules every feed of the registry and publishes new items to
``bus.topics.raw``, keyed by item id.

State (seen-set, validators, backoff) lives in ``<data_dir>/<collect.state_file>``; a restart,
even after kill -9, neither republishes what was published nor skips what appeared meanwhile.

Reload (SIGHUP sets ``ctx.reload``): the feed registry and the watchlist are read again and jobs
are added, changed or removed in place. The source is, in order: the ``reload_feeds`` callable
given to :class:`CollectorRole`; else the config file the daemon was started with
(``ctx.config_path``: its ``collect:`` section, inline feeds and ``feeds_file``); else
``collect.feeds_file`` alone (inline feeds then stay as they were). A registry that fails to
load is logged and the running one is kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from monitor.bus.base import Bus
from monitor.collect.collector import Collector
from monitor.collect.config import CollectConfig, FeedConfig, resolve_feeds
from monitor.collect.entities import EntityMatcher, Watchlist, load_watchlist
from monitor.collect.fetch import HttpFetcher
from monitor.collect.metrics import CollectMetrics
from monitor.collect.publish import Publisher
from monitor.collect.scheduler import FeedScheduler
from monitor.collect.state import StateStore
from monitor.config import Config, load_config
from monitor.errors import RiskwireError
from monitor.logs import get_logger
from monitor.roles import RoleContext

log = get_logger("collect.role")
PRUNE_EVERY_S = 3600.0


def build_fetcher(cfg: CollectConfig) -> HttpFetcher:
    return HttpFetcher(
        user_agent=cfg.user_agent,
        max_body_bytes=cfg.max_body_bytes,
        connect_timeout_s=cfg.http.connect_timeout_s,
        read_timeout_s=cfg.http.read_timeout_s,
        total_timeout_s=cfg.http.total_timeout_s,
        max_redirects=cfg.http.max_redirects,
        verify_tls=cfg.http.verify_tls,
        max_connections=max(cfg.concurrency, 4),
    )


def build_matcher(cfg: CollectConfig) -> EntityMatcher:
    return EntityMatcher(load_watchlist(cfg.watchlist) if cfg.watchlist else Watchlist())


def state_path(config: Config) -> Path:
    path = config.collect.state_file
    return path if path.is_absolute() else config.data_dir / path


class CollectorRole:
    name = "collector"

    def __init__(
        self,
        config: Config,
        bus: Bus,
        registry: CollectorRegistry,
        *,
        reload_event: threading.Event | None = None,
        config_path: Path | None = None,
        items_total: Counter | None = None,
        reload_feeds: Callable[[], tuple[CollectConfig, tuple[FeedConfig, ...]]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.cfg = config.collect
        self.bus = bus
        self.metrics = CollectMetrics.create(registry)
        self.reload_event = reload_event or threading.Event()
        self.config_path = config_path
        self._items_total = items_total
        self._reload_feeds = reload_feeds
        self.clock = clock
        # Fail at build time on a bad registry or watchlist, not minutes later in a job.
        self.feeds = resolve_feeds(self.cfg)
        self.matcher = build_matcher(self.cfg)
        self._ready = threading.Event()
        self.scheduler: FeedScheduler | None = None
        self.collector: Collector | None = None

    def ready(self) -> bool:
        return self._ready.is_set()

    def _count_items(self, n: int) -> None:
        if self._items_total is not None:
            self._items_total.labels(stage="collect").inc(n)

    def _load_registry(self) -> tuple[CollectConfig, tuple[FeedConfig, ...]]:
        if self._reload_feeds is not None:
            return self._reload_feeds()
        if self.config_path is not None:
            cfg = load_config(self.config_path).collect
            return cfg, resolve_feeds(cfg)
        return self.cfg, resolve_feeds(self.cfg)

    def reload(self) -> None:
        assert self.scheduler is not None and self.collector is not None
        try:
            cfg, feeds = self._load_registry()
            matcher = build_matcher(cfg)
        except RiskwireError as exc:
            log.error("reload failed; keeping the running feed registry", extra={"error": str(exc)})
            return
        self.collector.matcher = matcher
        changes = self.scheduler.sync(feeds)
        self.feeds = feeds
        log.info("reloaded", extra={"feeds": len(feeds), **changes})

    def run(self, stop: threading.Event) -> None:
        topic = self.config.bus.topics.raw
        self.bus.ensure_topics([topic])
        producer = self.bus.producer()
        state = StateStore(state_path(self.config))
        fetcher = build_fetcher(self.cfg)
        collector = Collector(
            self.cfg,
            state=state,
            fetcher=fetcher,
            publisher=Publisher(producer, topic),
            matcher=self.matcher,
            metrics=self.metrics,
            items_total=self._count_items,
            clock=self.clock,
        )
        self.collector = collector
        loaded = collector.load_seen()
        log.info("collector starting", extra={"feeds": len(self.feeds), "seen": loaded})
        scheduler = FeedScheduler(collector, concurrency=self.cfg.concurrency)
        self.scheduler = scheduler
        try:
            scheduler.start(self.feeds)
            self._ready.set()
            last_prune = self.clock()
            while not stop.wait(0.2):
                if self.reload_event.is_set():
                    self.reload_event.clear()
                    self.reload()
                if self.clock() - last_prune > PRUNE_EVERY_S:
                    last_prune = self.clock()
                    cutoff = last_prune - self.cfg.dedup.seen_retention_days * 86400.0
                    state.prune(cutoff)
                    collector.deduper.prune_ids(last_prune)
        finally:
            self._ready.clear()
            # Fetches still in flight are aborted first: a stalled feed would otherwise hold
            # shutdown for its read timeout, past the grace period. An aborted poll publishes
            # nothing and writes no seen-set entry, so its items come on the next start; a poll
            # past its fetch flushes its own batch before writing the seen-set.
            fetcher.abort()
            scheduler.shutdown(wait=True)
            try:
                producer.flush()
            finally:
                producer.close()
                fetcher.close()
                state.close()
            log.info("collector stopped", extra={"polls": scheduler.polls})


def build(ctx: RoleContext) -> CollectorRole:
    core = getattr(ctx, "core", None)
    return CollectorRole(
        ctx.config,
        ctx.bus,
        ctx.registry,
        reload_event=ctx.reload,
        config_path=getattr(ctx, "config_path", None),
        items_total=core.items if core is not None else None,
    )
