"""Consumer lag reporting from inside a role's own loop.

A consumer (kafka-python's in particular) is not thread-safe, so lag cannot be read from the
scrape thread. Instead the role calls :meth:`LagReporter.maybe_report` after each poll; it asks
the consumer at most every ``every_s`` seconds (a Kafka lag read is a network round trip) and
sets ``riskwire_consumer_lag{topic,group}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Gauge

from monitor.bus.base import Consumer
from monitor.errors import BusError
from monitor.logs import get_logger

log = get_logger("lag")


@dataclass
class LagReporter:
    gauge: Gauge
    group: str
    consumer: Consumer
    every_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _last: float = field(default=float("-inf"))

    def maybe_report(self) -> dict[str, int] | None:
        """Refresh the gauge if ``every_s`` has passed; returns lag by topic when it did."""
        now = self.clock()
        if now - self._last < self.every_s:
            return None
        self._last = now
        try:
            per_partition = self.consumer.lag()
        except BusError as exc:
            log.warning(
                "could not read consumer lag", extra={"group": self.group, "error": str(exc)}
            )
            return None
        by_topic: dict[str, int] = {}
        for tp, lag in per_partition.items():
            by_topic[tp.topic] = by_topic.get(tp.topic, 0) + max(0, lag)
        for topic, lag in by_topic.items():
            self.gauge.labels(topic=topic, group=self.group).set(lag)
        return by_topic
