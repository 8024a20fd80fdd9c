"""Collector metrics, per feed, on an injected registry.

``riskwire_items_total{stage="collect"}`` is a core metric (monitor/metrics.py); the app passes
its counter in as ``items_total`` so that it is incremented here without a second registration.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

FETCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass(frozen=True)
class CollectMetrics:
    fetches: Counter
    fetch_seconds: Histogram
    items: Counter
    drops: Counter
    parse_problems: Counter
    last_success: Gauge
    backoff_state: Gauge
    consecutive_failures: Gauge
    publish_errors: Counter
    feeds_configured: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> CollectMetrics:
        return cls(
            fetches=Counter(
                "riskwire_feed_fetches_total",
                "Feed fetches by outcome (200, 304, timeout, connect_error, http_4xx, http_5xx, "
                "redirect_error, too_large, parse_error, io_error)",
                ["feed", "outcome"],
                registry=registry,
            ),
            fetch_seconds=Histogram(
                "riskwire_feed_fetch_seconds",
                "Time to fetch a feed's body (not parsing)",
                ["feed"],
                buckets=FETCH_BUCKETS,
                registry=registry,
            ),
            items=Counter(
                "riskwire_feed_items_total",
                "Entries seen per feed, by result (new = published, duplicate, invalid)",
                ["feed", "result"],
                registry=registry,
            ),
            drops=Counter(
                "riskwire_feed_dropped_items_total",
                "Entries not published, by reason",
                ["feed", "reason"],
                registry=registry,
            ),
            parse_problems=Counter(
                "riskwire_feed_parse_problems_total",
                "Feeds parsed despite a problem (malformed XML, DTD removed, wrong encoding)",
                ["feed"],
                registry=registry,
            ),
            last_success=Gauge(
                "riskwire_feed_last_success_timestamp_seconds",
                "Unix time of the feed's last successful fetch (200 or 304)",
                ["feed"],
                registry=registry,
            ),
            backoff_state=Gauge(
                "riskwire_feed_backoff_state",
                "1 while the feed is backing off after failures, else 0",
                ["feed"],
                registry=registry,
            ),
            consecutive_failures=Gauge(
                "riskwire_feed_consecutive_failures",
                "Failed fetches in a row",
                ["feed"],
                registry=registry,
            ),
            publish_errors=Counter(
                "riskwire_collect_publish_errors_total",
                "Batches that could not be flushed to the bus (retried next poll)",
                registry=registry,
            ),
            feeds_configured=Gauge(
                "riskwire_collect_feeds",
                "Feeds in the registry",
                registry=registry,
            ),
        )

    def forget(self, feed: str) -> None:
        """Drop a removed feed's gauges so dashboards do not show it as stale forever."""
        for gauge in (self.last_success, self.backoff_state, self.consecutive_failures):
            with contextlib.suppress(KeyError):
                gauge.remove(feed)
